//! Access to sites and devices, for every route that takes a site or
//! device id.
//!
//! Admins see every site and device, and get 404 for an id that does not
//! exist. A building owner sees only the sites they own and those sites'
//! devices, and gets 403 (`site_forbidden`, `device_forbidden`) for any
//! other id, even one that does not exist, so ids do not leak.

use se_core::DeviceId;
use se_store::{Role, Site};

use crate::api::known_device;
use crate::auth::CurrentUser;
use crate::error::ApiError;
use crate::WebState;

/// Returns a site that `user` may see: any existing site for an admin
/// (404 otherwise), an owned site for a building owner (403 otherwise).
pub(crate) async fn accessible_site(state: &WebState, user: &CurrentUser, id: &str) -> Result<Site, ApiError> {
    if user.role == Role::BuildingOwner {
        let owned = state.store.sites_of_user(user.id).await?;
        return owned
            .into_iter()
            .find(|site| site.id == id)
            .ok_or_else(|| ApiError::SiteForbidden { value: id.to_owned() });
    }
    state.store.site(id).await?.ok_or_else(|| ApiError::SiteNotFound { value: id.to_owned() })
}

/// Returns the site of a device that `user` may see, with the same rules as
/// [`accessible_site`] applied to the device's site.
pub(crate) async fn accessible_device_site(state: &WebState, user: &CurrentUser, device: &DeviceId) -> Result<Site, ApiError> {
    let site_id = state.store.device_site(device).await?;
    if user.role == Role::BuildingOwner {
        let owned = state.store.sites_of_user(user.id).await?;
        if !owned.iter().any(|site| site.id == site_id) {
            return Err(ApiError::DeviceForbidden { value: device.to_string() });
        }
    }
    known_device(state, device).await?;
    Ok(state.store.site(&site_id).await?.unwrap_or_else(|| Site {
        id: site_id,
        name: String::new(),
        time_zone: "UTC".to_owned(),
        currency: "EUR".to_owned(),
        tariff_json: None,
        co2_g_per_kwh: None,
    }))
}
