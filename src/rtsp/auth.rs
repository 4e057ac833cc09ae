//! RTSP logins: Digest only (the password never crosses the network, unlike Basic), and wrong
//! passwords throttled per client address as on the HTTP API.

use crate::metrics::LoginFailures;
use crate::rate_limit::RateLimit;
use gstreamer::glib;
use gstreamer::subclass::prelude::*;
use gstreamer_rtsp_server as gst_rtsp_server;
use gstreamer_rtsp_server::prelude::*;
use gstreamer_rtsp_server::subclass::prelude::*;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

/// The rate limit's key for wrong RTSP passwords.
const LOGIN: &str = "the RTSP server";

mod imp {
    use super::*;

    #[derive(Default)]
    pub struct ThrottledAuth {
        pub throttle: OnceLock<LoginThrottle>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for ThrottledAuth {
        const NAME: &'static str = "IpcamThrottledAuth";
        type Type = super::ThrottledAuth;
        type ParentType = gst_rtsp_server::RTSPAuth;
    }

    impl ObjectImpl for ThrottledAuth {}

    impl RTSPAuthImpl for ThrottledAuth {
        fn authenticate(&self, ctx: &gst_rtsp_server::RTSPContext) -> bool {
            let Some(throttle) = self.throttle.get() else {
                return false;
            };
            // A client's first, bare request is how it learns the Digest nonce, not a try.
            let tried = ctx
                .request()
                .is_some_and(|request| !request.parse_auth_credentials().is_empty());
            let address = ctx.client().and_then(super::remote_ip);
            throttle.judge(address, tried, || {
                self.parent_authenticate(ctx) && ctx.token().is_some()
            })
        }
    }
}

glib::wrapper! {
    pub struct ThrottledAuth(ObjectSubclass<imp::ThrottledAuth>)
        @extends gst_rtsp_server::RTSPAuth;
}

/// Wrong RTSP passwords, counted and throttled per client address: one policy for the live
/// server and the event server.
pub struct LoginThrottle {
    limit: RateLimit,
    failures: Arc<LoginFailures>,
}

impl LoginThrottle {
    pub fn new(failures: Arc<LoginFailures>) -> Self {
        LoginThrottle {
            limit: RateLimit::for_logins(),
            failures,
        }
    }

    /// Whether a request from `address` gets in: `tried` says it gave a login (a bare request
    /// only learns the nonce), and `right` checks it.
    pub fn judge(
        &self,
        address: Option<IpAddr>,
        tried: bool,
        right: impl FnOnce() -> bool,
    ) -> bool {
        let now = std::time::Instant::now();
        if tried
            && let Some(address) = address
            && self.limit.waiting(address, LOGIN, now).is_some()
        {
            // Over its wrong tries even the right password is refused, so a guesser cannot
            // learn which try was right. The client gets the usual 401.
            return false;
        }
        let accepted = right();
        if tried && !accepted {
            crate::metrics::count(&self.failures.rtsp, 1);
            tracing::info!(
                "wrong RTSP username or password from {}",
                address.map_or_else(|| "an unknown address".into(), |a| a.to_string())
            );
            if let Some(address) = address {
                let _ = self.limit.check(address, LOGIN, now);
            }
        }
        accepted
    }
}

/// The one login RTSP clients give, and where wrong ones are counted.
pub struct Login {
    pub user: String,
    pub password: String,
    pub failures: Arc<LoginFailures>,
}

impl ThrottledAuth {
    /// Accepts `login` by Digest, giving `token` to whoever logs in.
    pub fn new(login: &Login, token: &gst_rtsp_server::RTSPToken) -> Self {
        let auth: Self = glib::Object::new();
        let _ = auth
            .imp()
            .throttle
            .set(LoginThrottle::new(login.failures.clone()));
        auth.set_supported_methods(gstreamer_rtsp::RTSPAuthMethod::Digest);
        auth.add_digest(&login.user, &login.password, token);
        auth
    }
}

fn remote_ip(client: &gst_rtsp_server::RTSPClient) -> Option<IpAddr> {
    super::limits::remote_address(client)?.parse().ok()
}
