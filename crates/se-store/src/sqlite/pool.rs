//! A fixed set of read-only connections, so reads run beside the writer.

use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::Connection;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::StoreError;

pub(super) struct ReaderPool {
    idle: Mutex<Vec<Connection>>,
    /// One permit per connection, so a task that gets a permit always finds
    /// an idle connection.
    permits: Arc<Semaphore>,
}

impl ReaderPool {
    pub(super) fn new(connections: Vec<Connection>) -> Self {
        let permits = Arc::new(Semaphore::new(connections.len()));
        Self {
            idle: Mutex::new(connections),
            permits,
        }
    }

    /// Waits for a free connection without blocking the async runtime.
    pub(super) async fn permit(&self) -> Result<OwnedSemaphorePermit, StoreError> {
        Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Worker("the reader pool was closed".to_owned()))
    }

    /// Takes an idle connection until the returned lease is dropped. Call
    /// only while holding a permit.
    pub(super) fn take(&self) -> Result<Lease<'_>, StoreError> {
        let conn = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .ok_or_else(|| {
                StoreError::Worker("no idle read connection although a permit was held".to_owned())
            })?;
        Ok(Lease {
            pool: self,
            conn: Some(conn),
        })
    }
}

/// A connection borrowed from the pool. Dropping it, also while a panic
/// unwinds, returns the connection, so the pool never shrinks.
pub(super) struct Lease<'a> {
    pool: &'a ReaderPool,
    conn: Option<Connection>,
}

impl Lease<'_> {
    pub(super) fn conn(&mut self) -> Result<&mut Connection, StoreError> {
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError::Worker("read connection already returned".to_owned()))
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(conn);
        }
    }
}
