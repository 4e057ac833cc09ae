//! Home Assistant's side of the add-on: the Supervisor's API, generated credentials, and the
//! Generic camera entries made through Home Assistant's REST API.

pub mod cameras;
pub mod credentials;
pub mod supervisor;

/// Running as a Home Assistant add-on: the Supervisor gave us its token.
pub fn in_addon() -> bool {
    std::env::var("SUPERVISOR_TOKEN").is_ok_and(|t| !t.is_empty())
}
