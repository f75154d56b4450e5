//! The page: the Vite bundle of `console/` embedded at build time (`build.rs`), or read from a directory
//! (`--ui-assets`, for frontend work), and the offline report: the same bundle with its script and style inlined and
//! a run's data inlined as `<script id="lab-run" type="application/json">`, so one chart implementation serves both
//! and the file opens with no network.

use std::borrow::Cow;
use std::path::PathBuf;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/console_assets.rs"));
}

/// The bundle's fixed names (the frontend's Vite config emits them).
pub const INDEX: &str = "index.html";
pub const APP_JS: &str = "assets/app.js";
pub const APP_CSS: &str = "assets/app.css";

/// Where the page's files come from.
#[derive(Debug, Clone)]
pub enum Assets {
    Embedded,
    Dir(PathBuf),
}

impl Assets {
    /// A file by its path under the bundle's root (`index.html`, `assets/app.js`).
    pub fn get(&self, path: &str) -> Option<Cow<'static, [u8]>> {
        match self {
            Assets::Embedded => embedded::ASSETS
                .iter()
                .find(|(name, _)| *name == path)
                .map(|(_, bytes)| Cow::Borrowed(*bytes)),
            Assets::Dir(dir) => {
                // Only plain relative paths: nothing outside the directory is served.
                if path
                    .split('/')
                    .any(|c| c.is_empty() || c == "." || c == "..")
                {
                    return None;
                }
                std::fs::read(dir.join(path)).ok().map(Cow::Owned)
            }
        }
    }

    fn text(&self, path: &str) -> Result<String, String> {
        let bytes = self
            .get(path)
            .ok_or_else(|| format!("the console bundle has no {path}"))?;
        String::from_utf8(bytes.into_owned()).map_err(|_| format!("{path} is not UTF-8"))
    }

    /// The self-contained report of one run: `data` is the RunData JSON.
    pub fn report_html(&self, data: &str) -> Result<String, String> {
        let index = self.text(INDEX)?;
        let js = self.text(APP_JS)?;
        let css = self.text(APP_CSS)?;
        Ok(inline(&index, &js, &css, data))
    }
}

/// The content type of a served file, by extension.
pub fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// `index` without its references to the script and the stylesheet, with both inlined and the data before the
/// script. `</` in the data and in the script is escaped so neither can close its `<script>` element early.
fn inline(index: &str, js: &str, css: &str, data: &str) -> String {
    let mut html = remove_tags(index, "<script", "</script>", "app.js");
    html = remove_tags(&html, "<link", ">", "app.css");
    let style = format!(
        "<style>\n{}\n</style>\n",
        css.replace("</style", "<\\/style")
    );
    let scripts = format!(
        "<script id=\"lab-run\" type=\"application/json\">{}</script>\n<script type=\"module\">\n{}\n</script>\n",
        data.replace("</", "<\\/"),
        js.replace("</script", "<\\/script")
    );
    html = insert_before(&html, "</head>", &style);
    insert_before(&html, "</body>", &scripts)
}

/// Remove every element from `open` to `close` whose text mentions `needle` (ASCII case-insensitive tags).
fn remove_tags(html: &str, open: &str, close: &str, needle: &str) -> String {
    let lower = html.to_ascii_lowercase();
    let mut out = String::with_capacity(html.len());
    let mut at = 0;
    while let Some(start) = lower[at..].find(open).map(|i| i + at) {
        let Some(end) = lower[start..].find(close).map(|i| i + start + close.len()) else {
            break;
        };
        out.push_str(&html[at..start]);
        if !html[start..end].contains(needle) {
            out.push_str(&html[start..end]);
        }
        at = end;
    }
    out.push_str(&html[at..]);
    out
}

/// `text` inserted before the last `marker`, or appended when there is none.
fn insert_before(html: &str, marker: &str, text: &str) -> String {
    match html.to_ascii_lowercase().rfind(marker) {
        Some(i) => format!("{}{text}{}", &html[..i], &html[i..]),
        None => format!("{html}{text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_inlines_bundle_and_data_and_references_nothing() {
        let index = r#"<!doctype html><html><head><title>x</title>
<script type="module" crossorigin src="/assets/app.js"></script>
<link rel="stylesheet" crossorigin href="/assets/app.css">
</head><body><div id="app"></div></body></html>"#;
        let html = inline(
            index,
            "console.log('a</script>')",
            "body{color:red}",
            r#"{"meta":{"label":"</script><b>"}}"#,
        );
        assert!(!html.contains("/assets/"), "{html}");
        assert!(
            html.contains("<style>\nbody{color:red}\n</style>\n</head>"),
            "{html}"
        );
        assert!(html.contains(r#"<script id="lab-run" type="application/json">{"meta":{"label":"<\/script><b>"}}</script>"#), "{html}");
        assert!(html.contains("console.log('a<\\/script>')"), "{html}");
        let data_at = html.find("lab-run").unwrap();
        let code_at = html.find("console.log").unwrap();
        assert!(data_at < code_at);
        assert!(html.contains(r#"<div id="app"></div>"#));
    }

    #[test]
    fn the_embedded_bundle_has_the_fixed_names() {
        for name in [INDEX, APP_JS, APP_CSS] {
            assert!(Assets::Embedded.get(name).is_some(), "{name} not embedded");
        }
        assert!(
            Assets::Dir(PathBuf::from("/"))
                .get("../etc/passwd")
                .is_none()
        );
    }
}
