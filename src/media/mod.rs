//! Media plumbing shared by every consumer of a camera.

pub mod fanout;
pub mod pipeline;
