//! A replica's HTTP endpoint (`--http HOST:PORT`, or its alias `--metrics`):
//! `/metrics` (Prometheus text), `/health` (200 while the replica is a
//! member that hears a leader, 503 with the reason otherwise), `/status`
//! (the JSON `concoord status --json` shows for this replica) and `/` (a
//! self-contained status page that refreshes itself every second).
//!
//! [`status_json`] is shared with `concoord status`, so both print one shape;
//! the server half is built with the `server` feature only.

use concoord_proto::wire::StatusInfo;

/// One replica's entry in `concoord status --json` (and `/status`).
pub fn status_json(address: &str, s: &StatusInfo) -> serde_json::Value {
    serde_json::json!({
        "address": address,
        "id": format!("{:x}", s.id),
        "role": s.role,
        "leader": s.leader,
        "ballot": [s.ballot.round, format!("{:x}", s.ballot.node)],
        "members": s.members,
        "next_slot": s.next_slot,
        "executed_slot": s.executed_slot,
        "snapshot_slot": s.snapshot_slot,
        "clients": s.clients,
        "parked": s.parked,
        "uptime_s": s.uptime_s,
        "object": s.object,
        "sessions": s.sessions,
    })
}

#[cfg(feature = "server")]
pub use server::serve;

#[cfg(feature = "server")]
mod server {
    use axum::extract::{Request, State};
    use axum::http::{header, StatusCode};
    use axum::response::{Html, IntoResponse, Response};
    use axum::routing::get;
    use axum::Router;
    use concoord_actors::node::NodeHandle;
    use std::net::SocketAddr;

    /// The status page: plain HTML, a little CSS, and a script that fetches
    /// `/status` and `/metrics` every second; no external assets.
    const STATUS_PAGE: &str = include_str!("http_status_page.html");

    /// Serves `node`'s endpoint on `addr` until the actix system stops;
    /// returns the bound address (`addr` may name port 0).
    pub async fn serve(addr: SocketAddr, node: NodeHandle) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let app = Router::new()
            .route("/", get(page))
            .route("/metrics", get(metrics))
            .route("/health", get(health))
            .route("/status", get(status))
            .fallback(not_found)
            .with_state(node);
        actix::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                log::warn!("the HTTP endpoint on {local} stopped: {e}");
            }
        });
        Ok(local)
    }

    async fn page() -> Html<&'static str> {
        Html(STATUS_PAGE)
    }

    async fn metrics(State(node): State<NodeHandle>) -> Response {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            node.metrics().encode(),
        )
            .into_response()
    }

    async fn health(State(node): State<NodeHandle>) -> Response {
        match node.health().await {
            Ok(what) => (StatusCode::OK, format!("ok: {what}\n")).into_response(),
            Err(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("unavailable: {why}\n"),
            )
                .into_response(),
        }
    }

    async fn status(State(node): State<NodeHandle>) -> Response {
        match node.status().await {
            Some(s) => (
                [(header::CONTENT_TYPE, "application/json")],
                super::status_json(&s.address, &s).to_string(),
            )
                .into_response(),
            None => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable: the replica is stopped\n",
            )
                .into_response(),
        }
    }

    async fn not_found(request: Request) -> Response {
        (
            StatusCode::NOT_FOUND,
            format!(
                "no {}: this endpoint serves /, /status, /health and /metrics\n",
                request.uri().path()
            ),
        )
            .into_response()
    }
}
