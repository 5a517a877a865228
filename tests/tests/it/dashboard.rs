//! The dashboard (`GET /`) as an operator meets it: in a real browser, `tests/dashboard/run.sh`
//! (Debian's Chromium, installed with apt-get when missing, driven by Playwright from a
//! virtualenv of its own) runs `tests/dashboard/dashboard.py` against this api and a worker
//! running the probe kinds (`gate` runs until cancelled), through the page's stable hooks only;
//! it exits non-zero on the first failed check. Without a browser: the page and its files come
//! from the binary with their content types and a strict CSP, and nothing else changed around
//! them.

use std::path::PathBuf;

use crate::harness::{Env, Probe};

/// Runs the browser script against `env` with `args`; asserts it passed and returns its lines.
async fn browse(env: &Env, args: &[&str]) -> String {
    let base = format!("http://{}", env.sys.addr);
    let stdout = crate::harness::run_script(
        "dashboard/run.sh",
        std::iter::once(base.as_str()).chain(args.iter().copied()),
    )
    .await;
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.ends_with("all passed"), "{stdout}");
    stdout
}

/// Where a test's screenshot goes (the target dir, never the source tree).
fn screenshot(name: &str) -> String {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(name)
        .to_string_lossy()
        .into_owned()
}

#[tokio::test]
async fn the_dashboard_shows_filters_pages_and_cancels_operations_live_in_a_real_browser() {
    let mut env = Env::start().await;
    let probe = Probe::default();
    env.worker(probe.kinds(), 16).await;
    let shot = screenshot("dashboard.png");
    let out = browse(&env, &["--screenshot", &shot]).await;
    // The probe reports 40 % once it runs; the page shows the percent the api holds.
    assert!(out.contains("progress 40%"), "{out}");
    for seen in [
        "cancel button makes it CANCELLED",
        "two selected",
        "filter input narrows",
        "appears by itself",
        "all to 127.0.0.1",
    ] {
        assert!(out.contains(seen), "no {seen:?} in:\n{out}");
    }
    assert!(
        std::fs::metadata(&shot).is_ok_and(|m| m.len() > 0),
        "{shot}"
    );
}

#[tokio::test]
async fn with_authentication_on_the_dashboard_asks_for_a_token_and_sends_it() {
    let creds = crate::auth::Creds::new();
    let mut env = creds.env(|_| {}).await;
    let probe = Probe::default();
    env.worker(probe.kinds(), 16).await;
    let token = crate::auth::hs256(&crate::auth::claims("operator", "lro.admin"));
    let shot = screenshot("dashboard-auth.png");
    let out = browse(&env, &["--token", &token, "--screenshot", &shot]).await;
    for seen in [
        "asks for a token",
        "after the token is entered, the list shows",
        "carries Authorization: Bearer",
    ] {
        assert!(out.contains(seen), "no {seen:?} in:\n{out}");
    }
}

#[tokio::test]
async fn the_page_and_its_files_come_from_the_binary_with_a_strict_csp() {
    let env = Env::start().await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", env.sys.addr);
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/app.css", "text/css; charset=utf-8"),
        ("/ui/favicon.svg", "image/svg+xml"),
    ] {
        let res = http
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("answers");
        assert_eq!(res.status(), 200, "{path}");
        let header = |name: &str| {
            res.headers()
                .get(name)
                .map(|v| v.to_str().expect("ascii").to_owned())
                .unwrap_or_default()
        };
        assert_eq!(header("content-type"), content_type, "{path}");
        let csp = header("content-security-policy");
        assert!(csp.starts_with("default-src 'self';"), "{path}: {csp}");
        assert!(!csp.contains("unsafe") && !csp.contains("http"), "{csp}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert!(!res.bytes().await.expect("body").is_empty(), "{path}");
    }
    // The page names its files by paths of this server only.
    let page = http.get(&base).send().await.expect("page");
    let html = page.text().await.expect("html");
    for file in ["ui/app.js", "ui/app.css"] {
        assert!(html.contains(&format!("\"{file}\"")), "{html}");
    }
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("//cdn"));
    // Everything else is as before: the 404 envelope for unknown files, other methods, other paths.
    for (method, path) in [
        ("GET", "/ui/nope.js"),
        ("GET", "/ui/"),
        ("POST", "/"),
        ("DELETE", "/ui/app.js"),
        ("GET", "/index.html"),
    ] {
        env.api
            .raw(method, path, None)
            .await
            .error(404, "NOT_FOUND");
    }
    // The page is public even with authentication on; its data is not.
    let creds = crate::auth::Creds::new();
    let guarded = creds.env(|_| {}).await;
    let base = format!("http://{}", guarded.sys.addr);
    let page = http.get(&base).send().await.expect("page");
    assert_eq!(page.status(), 200);
    guarded
        .api
        .raw("GET", "/v1/operations", None)
        .await
        .error(401, "UNAUTHENTICATED");
}
