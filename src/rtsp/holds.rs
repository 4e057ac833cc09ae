//! What a viewer's media keeps alive (a camera lease and hub place, a pinned clip), carried
//! from `create_element`, where only the element exists, to `media_configure`, where the media
//! does, and dropped when the media is unprepared: the reliable "viewer gone" signal. An
//! element that never becomes a media (a DESCRIBE that failed) drops its hold when it is freed.

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_rtsp_server as gst_rtsp_server;
use gstreamer_rtsp_server::prelude::*;
use std::sync::{Arc, Mutex};

/// One kept hold: the element's address names it, the weak reference finds it.
struct Pending<T> {
    address: usize,
    element: glib::WeakRef<gst::Element>,
    hold: T,
}

/// The holds of one factory's media still being built.
pub struct ViewerHolds<T> {
    pending: Arc<Mutex<Vec<Pending<T>>>>,
}

impl<T> Default for ViewerHolds<T> {
    fn default() -> Self {
        Self {
            pending: Arc::default(),
        }
    }
}

impl<T: Send + 'static> ViewerHolds<T> {
    /// Keeps `hold` for the media that `element` will become.
    pub fn hold(&self, element: &gst::Element, hold: T) {
        let address = element.as_ptr() as usize;
        super::lock(&self.pending).push(Pending {
            address,
            element: element.downgrade(),
            hold,
        });
        let pending = Arc::downgrade(&self.pending);
        element.add_weak_ref_notify(move || {
            if let Some(pending) = pending.upgrade() {
                super::lock(&pending).retain(|p| p.address != address);
            }
        });
    }

    /// Ties the hold kept for `media`'s element to the media: it is dropped when the media is
    /// unprepared.
    pub fn release_on_unprepared(&self, media: &gst_rtsp_server::RTSPMedia) {
        let element = media.element();
        let hold = {
            let mut pending = super::lock(&self.pending);
            let index = pending
                .iter()
                .position(|p| p.element.upgrade().is_some_and(|e| e == element));
            index.map(|i| pending.swap_remove(i).hold)
        };
        let hold = Mutex::new(hold);
        media.connect_unprepared(move |_| {
            tracing::debug!("a viewer's media was unprepared");
            super::lock(&hold).take();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hold whose element is freed before it became a media goes with it.
    #[test]
    fn a_hold_goes_with_an_element_that_never_became_a_media() {
        gst::init().unwrap();
        let holds = ViewerHolds::<Arc<()>>::default();
        let held = Arc::new(());
        let element = gst::ElementFactory::make("fakesink").build().unwrap();
        holds.hold(&element, held.clone());
        assert_eq!(Arc::strong_count(&held), 2);
        drop(element);
        assert_eq!(Arc::strong_count(&held), 1, "the hold was dropped");
        assert!(super::super::lock(&holds.pending).is_empty());
    }
}
