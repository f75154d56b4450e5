//! The API objects a pod refers to, read with the node's credentials (the Node authorizer lets a node read exactly
//! the ConfigMaps, Secrets and ServiceAccounts of the pods bound to it, and request tokens for them).

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use kube::Client;
use kube::api::{Api, PostParams};

use super::env;

/// Reads through the API server.
#[derive(Clone)]
pub struct ApiObjects {
    pub client: Client,
}

impl env::Objects for ApiObjects {
    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, String> {
        Api::<ConfigMap>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(|e| e.to_string())
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, String> {
        Api::<Secret>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(|e| e.to_string())
    }
}

/// A service-account token bound to the pod (TokenRequest), as the kubelet requests it for projected volumes.
#[derive(Debug, Clone)]
pub struct Token {
    pub token: String,
    /// Seconds since the epoch.
    pub expires_at: i64,
}

impl ApiObjects {
    pub async fn token(
        &self,
        namespace: &str,
        service_account: &str,
        audiences: Vec<String>,
        expiration_seconds: i64,
        pod: (&str, &str),
    ) -> Result<Token, String> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: Some(audiences),
                expiration_seconds: Some(expiration_seconds),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(pod.0.to_string()),
                    uid: Some(pod.1.to_string()),
                }),
                ..TokenRequestSpec::default()
            }),
            ..TokenRequest::default()
        };
        let body = request;
        let answered: TokenRequest = api
            .create_subresource("token", service_account, &PostParams::default(), &body)
            .await
            .map_err(|e| e.to_string())?;
        let status = answered
            .status
            .ok_or("the TokenRequest came back without a status")?;
        Ok(Token {
            token: status
                .token
                .ok_or("the TokenRequest came back without a token")?,
            expires_at: status
                .expiration_timestamp
                .map(|t| t.0.as_second())
                .ok_or("the TokenRequest came back without an expiry")?,
        })
    }
}
