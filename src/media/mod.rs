//! Media plumbing shared by every consumer of a camera.

pub mod hub;
pub mod pipeline;
