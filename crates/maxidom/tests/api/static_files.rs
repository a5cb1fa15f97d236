//! `/static/*` and CORS.

use crate::helpers::{apps, new_id};
use reqwest::StatusCode;
use vigil_maxidom::MaxidomConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_files_and_cors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("update.xml"), "<gupdate/>").unwrap();
    let config = MaxidomConfig {
        static_dir: Some(dir.path().to_owned()),
        ..MaxidomConfig::default()
    };
    for app in apps(config).await {
        // The manifest's `update_url` is `<server>/static/update.xml`; `/api/static/` is kept as well.
        for path in ["/static/update.xml", "/api/static/update.xml"] {
            let r = app.client.get(app.url(path)).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert_eq!(r.headers()["content-type"], "application/xml", "{path}");
            assert_eq!(r.text().await.unwrap(), "<gupdate/>");
        }
        for missing in [
            "/static/extension.crx",
            "/api/static/extension.crx",
            "/static/..%2Fsecret",
            "/api/static/..%2Fsecret",
            "/static/other.txt",
            "/api/static/other.txt",
        ] {
            let r = app.client.get(app.url(missing)).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{missing}");
            let body: serde_json::Value = r.json().await.unwrap();
            assert!(body["detail"].is_string(), "{missing}: {body}");
        }
        std::fs::write(dir.path().join("extension.crx"), b"Cr24\x03").unwrap();
        let r = app
            .client
            .get(app.url("/static/extension.crx"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()["content-type"],
            "application/x-chrome-extension"
        );
        assert_eq!(r.bytes().await.unwrap().as_ref(), b"Cr24\x03");
        std::fs::remove_file(dir.path().join("extension.crx")).unwrap();
        let r = app
            .client
            .request(
                reqwest::Method::OPTIONS,
                app.url(&format!("/api/train/{}", new_id())),
            )
            .header("origin", "chrome-extension://abcdef")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        assert_eq!(
            r.headers()["access-control-allow-origin"],
            "chrome-extension://abcdef"
        );
        assert_eq!(r.headers()["access-control-allow-credentials"], "true");
        app.stop().await;
    }
}
