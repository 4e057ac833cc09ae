//! Home Assistant's side of the add-on: the Supervisor's API and the Generic camera entries
//! made through Home Assistant's REST API.

pub mod cameras;
pub mod form;
pub mod supervisor;

/// Running as a Home Assistant add-on: the Supervisor gave us its token.
pub fn in_addon() -> bool {
    std::env::var("SUPERVISOR_TOKEN").is_ok_and(|t| !t.is_empty())
}
