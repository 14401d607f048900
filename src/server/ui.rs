//! The operator page (`GET /`, `GET /ui`) and its two assets, compiled into the
//! binary from `static/` so the gateway serves them from any working folder,
//! in a container with no source tree, and offline.
//!
//! The page talks only to this gateway, which the Content-Security-Policy
//! enforces: no script, style or connection may go anywhere else.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

const INDEX: &str = include_str!("../../static/index.html");
const CSS: &str = include_str!("../../static/app.css");
const JS: &str = include_str!("../../static/app.js");

/// Everything the page may load: itself, and the favicon it inlines.
const CSP: &str = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The page's routes, for any router state.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/ui", get(index))
        .route("/ui/app.css", get(css))
        .route("/ui/app.js", get(js))
}

// `no-cache` (revalidate) rather than a lifetime: the assets change with the
// binary and carry no version in their names.
async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CSP),
        ],
        INDEX,
    )
}

async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        CSS,
    )
}

async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        JS,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::Response;

    async fn parts(response: Response) -> (String, String) {
        assert_eq!(response.status(), axum::http::StatusCode::OK);
        let kind = response.headers()[header::CONTENT_TYPE]
            .to_str()
            .expect("ascii")
            .to_owned();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (kind, String::from_utf8(body.to_vec()).expect("utf-8"))
    }

    #[tokio::test]
    async fn the_page_and_its_assets_are_served_with_their_types() {
        let (kind, body) = parts(index().await.into_response()).await;
        assert!(kind.starts_with("text/html"), "{kind}");
        assert!(body.contains(r#"src="/ui/app.js""#));
        assert!(body.contains(r#"href="/ui/app.css""#));
        let (kind, body) = parts(js().await.into_response()).await;
        assert!(kind.starts_with("text/javascript"), "{kind}");
        assert_eq!(body, JS);
        let (kind, body) = parts(css().await.into_response()).await;
        assert!(kind.starts_with("text/css"), "{kind}");
        assert_eq!(body, CSS);
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for (name, text) in [("index.html", INDEX), ("app.css", CSS), ("app.js", JS)] {
            for remote in ["http:", "https:", "//cdn", "@import", "url("] {
                assert!(!text.contains(remote), "static/{name} refers to {remote}");
            }
        }
    }
}
