//! The `route` label's templates: a request path mapped to the route template it matches, shared by the route
//! table (which builds them from its OpenAPI paths) and the observing middleware (which labels every request).

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

/// One `/`-separated piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(&'static str),
    /// `{name}`: one non-empty segment.
    Param,
    /// `{*name}`: the non-empty rest of the path.
    CatchAll,
}

/// Maps a request path to the route template it matches, or [`contract::metrics::UNMATCHED_ROUTE`].
#[derive(Debug, Clone)]
pub struct RouteTemplates {
    exact: HashSet<&'static str>,
    patterns: Vec<(Vec<Segment>, &'static str)>,
}

/// Templates become label values and span attributes, which want `&'static str`; the table is fixed, so each
/// distinct template is leaked once per process, however many apps are built (tests build many).
fn intern(template: &str) -> &'static str {
    static INTERNED: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut interned = INTERNED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(existing) = interned.get(template) {
        return existing;
    }
    let leaked: &'static str = Box::leak(template.to_owned().into_boxed_str());
    interned.insert(leaked);
    leaked
}

impl RouteTemplates {
    /// Templates in axum's syntax (`/jobs/{id}`, `/apidocs/{*rest}`).
    pub fn new(templates: impl IntoIterator<Item = String>) -> RouteTemplates {
        let mut exact = HashSet::new();
        let mut patterns = Vec::new();
        for template in templates {
            let template = intern(&template);
            if !template.contains('{') {
                exact.insert(template);
                continue;
            }
            let segments = template
                .split('/')
                .map(|piece| {
                    if piece.starts_with("{*") {
                        Segment::CatchAll
                    } else if piece.starts_with('{') {
                        Segment::Param
                    } else {
                        Segment::Literal(piece)
                    }
                })
                .collect();
            patterns.push((segments, template));
        }
        RouteTemplates { exact, patterns }
    }

    /// The template `path` matches.
    pub fn template(&self, path: &str) -> &'static str {
        if let Some(template) = self.exact.get(path) {
            return template;
        }
        self.patterns
            .iter()
            .find(|(segments, _)| matches(segments, path))
            .map_or(contract::metrics::UNMATCHED_ROUTE, |(_, template)| template)
    }
}

fn matches(segments: &[Segment], path: &str) -> bool {
    let mut rest = path;
    for (index, segment) in segments.iter().enumerate() {
        // Every template starts with `/`: the first piece is the empty string before it.
        if index > 0 {
            match rest.strip_prefix('/') {
                Some(after) => rest = after,
                None => return false,
            }
        }
        let (piece, after) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        match segment {
            Segment::Literal(literal) if piece == *literal => rest = after,
            Segment::Param if !piece.is_empty() => rest = after,
            Segment::CatchAll => return !rest.is_empty(),
            _ => return false,
        }
    }
    rest.is_empty()
}
