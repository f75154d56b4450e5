//! How the generator's Kubernetes clients (`--monitor`'s counts and events, the cluster faults) bound their calls.
//!
//! kube-rs's `read_timeout` is a timeout on every read of the connection, idle ones included: a pooled connection
//! with no call for that long errors out, and a call that takes it at that moment fails with `client error
//! (SendRequest)`. Faults spaced exactly that far apart hit the race (a fault 10 s after the last one failed that
//! way). So no read timeout: each call is bounded instead, from its request to its response's headers.

use std::time::Duration;

/// Connecting to the API server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A client for `config` whose every call gets an answer within `per_call`, or fails saying it did not.
pub fn bounded_client(
    mut config: kube::Config,
    per_call: Duration,
) -> Result<kube::Client, kube::Error> {
    config.read_timeout = None;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&tower::timeout::TimeoutLayer::new(per_call))
        .build())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    use axum::extract::ConnectInfo;
    use axum::routing::get;

    use super::*;

    /// An HTTP server, not a Kubernetes API (the transport is under test): `/fast` answers at once, `/slow` never;
    /// it records each caller's port.
    async fn server(callers: Arc<Mutex<BTreeSet<u16>>>) -> SocketAddr {
        let record = move |ConnectInfo(peer): ConnectInfo<SocketAddr>| {
            let callers = callers.clone();
            async move {
                callers.lock().unwrap().insert(peer.port());
                "{}"
            }
        };
        let app = axum::Router::new()
            .route("/fast", get(record))
            .route("/slow", get(std::future::pending::<&'static str>));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
        });
        addr
    }

    fn client_for(addr: SocketAddr, per_call: Duration) -> kube::Client {
        let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
        bounded_client(config, per_call).unwrap()
    }

    async fn call(client: &kube::Client, path: &str) -> Result<String, kube::Error> {
        client
            .request_text(http::Request::get(path).body(Vec::new()).unwrap())
            .await
    }

    #[tokio::test]
    async fn a_connection_idle_longer_than_a_call_may_take_is_reused() {
        let callers = Arc::new(Mutex::new(BTreeSet::new()));
        let addr = server(callers.clone()).await;
        let per_call = Duration::from_millis(300);
        let client = client_for(addr, per_call);
        call(&client, "/fast").await.unwrap();
        // A read timeout of `per_call` would have closed the pooled connection meanwhile.
        tokio::time::sleep(per_call * 3).await;
        call(&client, "/fast").await.unwrap();
        assert_eq!(callers.lock().unwrap().len(), 1, "{callers:?}");
    }

    #[tokio::test]
    async fn a_call_without_an_answer_fails_within_its_bound() {
        let addr = server(Arc::default()).await;
        let per_call = Duration::from_millis(300);
        let client = client_for(addr, per_call);
        let started = std::time::Instant::now();
        let error = call(&client, "/slow").await.unwrap_err();
        let took = started.elapsed();
        assert!(
            took >= per_call && took < Duration::from_secs(5),
            "{took:?}"
        );
        assert!(error.to_string().contains("timed out"), "{error}");
    }
}
