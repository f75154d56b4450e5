//! Who is calling the kubelet API and whether they may: a client certificate signed by the cluster CA (the API
//! server's kubelet client) names a user and groups (CN, O); a bearer token is checked with a TokenReview. Either is
//! then authorized with a SubjectAccessReview for `nodes/<subresource>` on this node, as the kubelet's webhook
//! authorizer does: `/metrics/*` is `metrics`, `/stats/*` is `stats`, `/logs/*` is `log`, everything else `proxy`.
//! Decisions are cached for 30 s.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Client;
use kube::api::{Api, PostParams};

/// The caller, as the TLS layer or a token names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

/// Why a request is refused: 401 (who are you) or 403 (not allowed), with the kubelet's wording.
#[derive(Debug, Clone, PartialEq)]
pub enum Refused {
    Unauthorized,
    Forbidden(String),
    Unavailable(String),
}

pub const CACHE_TTL: Duration = Duration::from_secs(30);

/// Token reviews by token: when, and who it named (none: not authenticated).
type TokenCache = Arc<Mutex<BTreeMap<String, (Instant, Option<User>)>>>;
/// Access reviews by user and subresource: when, and whether allowed.
type DecisionCache = Arc<Mutex<BTreeMap<(User, String), (Instant, bool)>>>;

/// The API's gate.
#[derive(Clone)]
pub struct Gate {
    client: Client,
    node: String,
    tokens: TokenCache,
    decisions: DecisionCache,
}

/// The subresource of `nodes` a path is authorized as.
pub fn subresource(path: &str) -> &'static str {
    if path.starts_with("/metrics") {
        "metrics"
    } else if path.starts_with("/stats") {
        "stats"
    } else if path.starts_with("/logs") {
        "log"
    } else {
        "proxy"
    }
}

impl Gate {
    pub fn new(client: Client, node: String) -> Gate {
        Gate {
            client,
            node,
            tokens: Arc::default(),
            decisions: Arc::default(),
        }
    }

    /// Authenticates (certificate user, else bearer token) and authorizes one request.
    pub async fn check(
        &self,
        cert_user: Option<User>,
        bearer: Option<&str>,
        path: &str,
    ) -> Result<User, Refused> {
        let user = match (cert_user, bearer) {
            (Some(u), _) => u,
            (None, Some(token)) => self
                .review_token(token)
                .await?
                .ok_or(Refused::Unauthorized)?,
            (None, None) => return Err(Refused::Unauthorized),
        };
        let sub = subresource(path);
        if self.authorize(&user, sub).await? {
            Ok(user)
        } else {
            Err(Refused::Forbidden(format!(
                "Forbidden (user={}, verb=get, resource=nodes, subresource={sub})",
                user.name
            )))
        }
    }

    async fn review_token(&self, token: &str) -> Result<Option<User>, Refused> {
        if let Some((at, user)) = self
            .tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(user.clone());
        }
        let reviews: Api<TokenReview> = Api::all(self.client.clone());
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_string(),
                ..TokenReviewSpec::default()
            },
            ..TokenReview::default()
        };
        let answer = reviews
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| Refused::Unavailable(format!("TokenReview: {e}")))?;
        let status = answer.status.unwrap_or_default();
        let user = (status.authenticated == Some(true))
            .then_some(status.user)
            .flatten()
            .map(|u| User {
                name: u.username.unwrap_or_default(),
                groups: u.groups.unwrap_or_default(),
            });
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.to_string(), (Instant::now(), user.clone()));
        Ok(user)
    }

    async fn authorize(&self, user: &User, sub: &str) -> Result<bool, Refused> {
        let key = (user.clone(), sub.to_string());
        if let Some((at, allowed)) = self
            .decisions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(*allowed);
        }
        let reviews: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                groups: Some(user.groups.clone()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some("get".into()),
                    version: Some("v1".into()),
                    resource: Some("nodes".into()),
                    subresource: Some(sub.to_string()),
                    name: Some(self.node.clone()),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let answer = reviews
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| Refused::Unavailable(format!("SubjectAccessReview: {e}")))?;
        let allowed = answer.status.is_some_and(|s| s.allowed);
        self.decisions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (Instant::now(), allowed));
        Ok(allowed)
    }
}

/// The user a verified client certificate names: CN, and O for groups.
pub fn user_of_certificate(der: &[u8]) -> Option<User> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(String::from))
        .collect();
    Some(User { name, groups })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_the_kubelets_subresources() {
        assert_eq!(subresource("/metrics/resource"), "metrics");
        assert_eq!(subresource("/stats/summary"), "stats");
        assert_eq!(subresource("/logs/"), "log");
        assert_eq!(subresource("/containerLogs/ns/p/c"), "proxy");
    }

    #[test]
    fn a_certificate_names_its_user_and_groups() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kube-apiserver-kubelet-client");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:masters");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let user = user_of_certificate(cert.der()).unwrap();
        assert_eq!(user.name, "kube-apiserver-kubelet-client");
        assert_eq!(user.groups, vec!["system:masters".to_string()]);
    }
}
