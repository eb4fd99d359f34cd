//! Serving a tarpc service, written once for the worker and the itemsaver: on an accepted
//! connection's transport, or in this process without a socket.
//!
//! These are macros, not functions: `tarpc::server::Serve::serve` is an `async fn` in a
//! trait, whose future cannot be named to require `Send` of it, so only the caller, which
//! knows the concrete server, can spawn its responses.

/// Serves `$serve` (a tarpc `Serve` value, cloned per request) on `$transport` until the
/// peer goes: at most `$limit` requests at once (more are refused, not queued), each
/// answered on a task of its own. Evaluates to the future that does it.
#[macro_export]
macro_rules! serve_transport {
    ($transport:expr, $serve:expr, $limit:expr) => {{
        use $crate::serve::__private::futures::StreamExt as _;
        use $crate::serve::__private::tarpc::server::{BaseChannel, Channel as _};
        BaseChannel::with_defaults($transport)
            .max_concurrent_requests($limit)
            .execute($serve)
            .for_each(|response| async move {
                ::tokio::spawn(response);
            })
    }};
}

/// Starts `$serve` (a tarpc `Serve` value) inside this process and evaluates to a `$client`
/// (the service's generated client type) wired to it without a socket.
#[macro_export]
macro_rules! serve_in_process {
    ($serve:expr, $client:ty) => {{
        let (client_side, server_side) =
            $crate::serve::__private::tarpc::transport::channel::unbounded();
        ::tokio::spawn($crate::serve_transport!(server_side, $serve, usize::MAX));
        <$client>::new(
            $crate::serve::__private::tarpc::client::Config::default(),
            client_side,
        )
        .spawn()
    }};
}

/// What the macros name, so that their callers need not depend on it themselves.
#[doc(hidden)]
pub mod __private {
    pub use futures;
    pub use tarpc;
}
