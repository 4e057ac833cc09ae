//! Home Assistant's side of the add-on: the Supervisor's API.

pub mod supervisor;
