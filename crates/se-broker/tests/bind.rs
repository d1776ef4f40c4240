//! Binding the listener.

mod common;

use common::loopback_config;
use se_broker::{Broker, BrokerConfig, BrokerError};

#[tokio::test]
async fn port_zero_reports_real_port() {
    let broker = Broker::bind(loopback_config())
        .await
        .expect("bind a free port");
    assert_ne!(broker.local_addr().port(), 0);
}

#[tokio::test]
async fn second_bind_reports_addr_in_use() {
    let first = Broker::bind(loopback_config())
        .await
        .expect("bind a free port");
    let addr = first.local_addr();

    let second = Broker::bind(BrokerConfig::new(addr)).await;

    let error = second.expect_err("second bind on the same address must fail");
    assert!(
        matches!(error, BrokerError::AddrInUse { addr: reported, .. } if reported == addr),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains(&addr.to_string()), "{message}");
    assert!(message.contains("--mqtt-listen"), "{message}");
}

#[tokio::test]
async fn busy_port_suggests_free_one() {
    // Hold a port and the one after it, so "the next port" would be busy too.
    let (busy, next) = loop {
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = busy.local_addr().unwrap().port();
        if let Ok(next) = std::net::TcpListener::bind(("127.0.0.1", port.wrapping_add(1))) {
            break (busy, next);
        }
    };
    let addr = busy.local_addr().unwrap();

    let error = Broker::bind(BrokerConfig::new(addr)).await.expect_err("the port is taken");

    let BrokerError::AddrInUse { suggestion, .. } = error else { panic!("{error:?}") };
    assert_ne!(suggestion, addr);
    assert_ne!(suggestion, next.local_addr().unwrap(), "the suggested port is taken too");
    assert_eq!(suggestion.ip(), addr.ip());
    std::net::TcpListener::bind(suggestion).expect("the suggested address is free");
}

#[tokio::test]
async fn invalid_setting_is_rejected() {
    let mut config = loopback_config();
    config.max_inflight = 0;
    let error = Broker::bind(config)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("max_inflight"), "{error}");
}
