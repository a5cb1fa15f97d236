//! End-to-end: the console through the real application stack (compression, CORS, routing) on a random port.

use vigil_http::testing::TestApp;

fn header<'a>(r: &'a reqwest::Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn serves_the_console_with_csp_and_cached_assets() {
    for app in TestApp::all(|_| vigil_console::router()).await {
        let page = app.client.get(app.url("/")).send().await.expect("GET /");
        assert_eq!(page.status(), 200);
        assert!(header(&page, "content-type").starts_with("text/html"));
        let csp = header(&page, "content-security-policy").to_owned();
        assert_eq!(csp, vigil_console::CSP);
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
        assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
        assert_eq!(header(&page, "cache-control"), "no-cache");
        let etag = header(&page, "etag").to_owned();
        assert!(etag.starts_with('"'));
        let html = page.text().await.expect("body");
        let app_js = vigil_console::asset_path("app.js");
        assert!(
            html.contains(&app_js),
            "the page links this build's modules"
        );

        // Unchanged page: 304 without a body.
        let again = app
            .client
            .get(app.url("/"))
            .header("If-None-Match", &etag)
            .send()
            .await
            .expect("revalidate");
        assert_eq!(again.status(), 304);

        // A versioned asset: cached for a year, gzip when asked, with its own ETag and the same CSP.
        let js = app
            .client
            .get(app.url(&app_js))
            .header("Accept-Encoding", "gzip")
            .send()
            .await
            .expect("GET app.js");
        assert_eq!(js.status(), 200);
        assert!(header(&js, "content-type").starts_with("text/javascript"));
        assert_eq!(
            header(&js, "cache-control"),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(header(&js, "content-encoding"), "gzip");
        assert_eq!(header(&js, "x-content-type-options"), "nosniff");
        assert_eq!(header(&js, "content-security-policy"), vigil_console::CSP);
        let js_tag = header(&js, "etag").to_owned();
        let revalidated = app
            .client
            .get(app.url(&app_js))
            .header("If-None-Match", &js_tag)
            .send()
            .await
            .expect("revalidate app.js");
        assert_eq!(revalidated.status(), 304);

        // Another build's URL (a page loaded before an upgrade) gets today's bytes, not cached for long.
        let old = app
            .client
            .get(app.url("/console/assets/000000000000/app.css"))
            .send()
            .await
            .expect("old version");
        assert_eq!(old.status(), 200);
        assert_eq!(header(&old, "cache-control"), "no-cache");
        assert!(header(&old, "content-type").starts_with("text/css"));

        // Unknown asset: a JSON 404 like the API's.
        let missing = app
            .client
            .get(app.url(&vigil_console::asset_path("nope.js")))
            .send()
            .await
            .expect("missing");
        assert_eq!(missing.status(), 404);
        let body: serde_json::Value = missing.json().await.expect("json");
        assert!(body["detail"].is_string());
        app.stop().await;
    }
}
