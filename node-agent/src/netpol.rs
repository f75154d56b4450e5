//! NetworkPolicy, the subset the node agent enforces (no policy engine runs on the local cluster): a policy that
//! selects a pod for `Ingress` or `Egress` with no rules for that direction denies all of it, as the API defines. The
//! agent turns those into rules on the pods' bridge ports, in the project's own nftables table (family `bridge`, in
//! the node's namespace), so a partitioned pod really is cut off, from pods, Services and the API alike. The node's
//! own traffic (probes, the kubelet API) stays allowed, as most CNI plugins allow it. A policy with rules is not
//! enforced for that direction, and the agent says so once; nothing is denied on its account.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use tokio_util::sync::CancellationToken;

use crate::host;
use crate::pods::context::Agent;

/// Does `selector` select an object with `labels`? (An empty selector selects everything.)
pub fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = selector
        .match_labels
        .as_ref()
        .is_none_or(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let by_expressions = selector
        .match_expressions
        .as_deref()
        .unwrap_or_default()
        .iter()
        .all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            let value = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        });
    by_labels && by_expressions
}

/// What the policies of a namespace do to one pod.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verdict {
    pub deny_ingress: bool,
    pub deny_egress: bool,
}

/// The policy types a policy has (written, or implied: Ingress always, Egress when it has egress rules).
fn types(policy: &NetworkPolicy) -> (bool, bool) {
    let spec = policy.spec.as_ref();
    match spec.and_then(|s| s.policy_types.as_ref()) {
        Some(t) => (
            t.iter().any(|x| x == "Ingress"),
            t.iter().any(|x| x == "Egress"),
        ),
        None => (
            true,
            spec.and_then(|s| s.egress.as_ref())
                .is_some_and(|e| !e.is_empty()),
        ),
    }
}

/// The verdict for a pod; policies with rules this agent does not enforce are named in `unenforced`.
pub fn verdict(
    policies: &[&NetworkPolicy],
    labels: &BTreeMap<String, String>,
    unenforced: &mut BTreeSet<String>,
) -> Verdict {
    let (mut denied_in, mut allowed_in, mut denied_out, mut allowed_out) =
        (false, false, false, false);
    for policy in policies {
        let Some(spec) = &policy.spec else { continue };
        if !matches(&spec.pod_selector.clone().unwrap_or_default(), labels) {
            continue;
        }
        let (ingress, egress) = types(policy);
        let name = format!(
            "{}/{}",
            policy.metadata.namespace.clone().unwrap_or_default(),
            policy.metadata.name.clone().unwrap_or_default()
        );
        if ingress {
            if spec.ingress.as_ref().is_none_or(|r| r.is_empty()) {
                denied_in = true;
            } else {
                allowed_in = true;
                unenforced.insert(name.clone());
            }
        }
        if egress {
            if spec.egress.as_ref().is_none_or(|r| r.is_empty()) {
                denied_out = true;
            } else {
                allowed_out = true;
                unenforced.insert(name);
            }
        }
    }
    Verdict {
        deny_ingress: denied_in && !allowed_in,
        deny_egress: denied_out && !allowed_out,
    }
}

/// The table for the pods the policies cut off: (veth, verdict).
pub fn table(name: &str, node_ip: Ipv4Addr, pods: &[(String, Verdict)]) -> String {
    let mut egress = String::new();
    let mut ingress = String::new();
    for (veth, v) in pods {
        if v.deny_egress {
            egress.push_str(&format!(
                "\t\tiifname \"{veth}\" ip daddr != {node_ip} counter drop\n"
            ));
        }
        if v.deny_ingress {
            ingress.push_str(&format!(
                "\t\toifname \"{veth}\" ip saddr != {node_ip} counter drop\n"
            ));
        }
    }
    format!(
        "table bridge {name} {{}}\nflush table bridge {name}\ntable bridge {name} {{\n\
         \tchain egress {{\n\t\ttype filter hook prerouting priority 0; policy accept;\n{egress}\t}}\n\
         \tchain ingress_forwarded {{\n\t\ttype filter hook forward priority 0; policy accept;\n{ingress}\t}}\n\
         \tchain ingress_routed {{\n\t\ttype filter hook output priority 0; policy accept;\n{ingress}\t}}\n\
         }}\n"
    )
}

/// The table's name in the node's namespace.
pub fn table_name(agent: &Agent) -> String {
    format!("{}_policy", agent.config.names.nft_table())
}

/// Keeps the table in step with the policies and the pods until `shutdown`.
pub async fn run(agent: std::sync::Arc<Agent>, shutdown: CancellationToken) {
    let (store, writer) = reflector::store::<NetworkPolicy>();
    let stream = reflector::reflector(
        writer,
        watcher(
            Api::<NetworkPolicy>::all(agent.client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .touched_objects();
    futures::pin_mut!(stream);
    let mut last = String::new();
    let mut said: BTreeSet<String> = BTreeSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut refused_once = false;
    loop {
        tokio::select! {
            item = stream.next() => match item {
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    if !refused_once {
                        tracing::warn!("watching NetworkPolicies: {e} (resuming; policies are not enforced meanwhile)");
                        refused_once = true;
                    }
                    continue;
                }
                None => return,
            },
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let script = render(&agent, &store, &mut said);
        if script != last {
            match host::nft(Some(&agent.config.names.node_netns()), &script).await {
                Ok(_) => last = script,
                Err(e) => tracing::warn!("applying the NetworkPolicy table: {e}"),
            }
        }
    }
}

fn render(agent: &Agent, store: &Store<NetworkPolicy>, said: &mut BTreeSet<String>) -> String {
    let policies = store.state();
    let mut unenforced = BTreeSet::new();
    let mut pods = Vec::new();
    for ((namespace, _), entry) in agent.registry.all() {
        let ours: Vec<&NetworkPolicy> = policies
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(namespace.as_str()))
            .map(|p| p.as_ref())
            .collect();
        let v = verdict(&ours, &entry.labels, &mut unenforced);
        if v != Verdict::default() {
            pods.push((entry.veth.clone(), v));
        }
    }
    for name in unenforced {
        if said.insert(name.clone()) {
            tracing::warn!(
                policy = %name,
                "NetworkPolicy with rules: not enforced (the node agent enforces deny-all policies only)"
            );
        }
    }
    table(&table_name(agent), agent.config.args.node_ip, &pods)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(value: serde_json::Value) -> NetworkPolicy {
        serde_json::from_value(value).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn deny_all_policies_deny_and_policies_with_rules_are_left_alone() {
        let partition = policy(serde_json::json!({
            "metadata": {"name": "p", "namespace": "lab"},
            "spec": {"podSelector": {"matchLabels": {"cut": "yes"}}, "policyTypes": ["Ingress", "Egress"]}
        }));
        let allow_web = policy(serde_json::json!({
            "metadata": {"name": "web", "namespace": "lab"},
            "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]}
        }));
        let mut unenforced = BTreeSet::new();
        let cut = verdict(&[&partition], &labels(&[("cut", "yes")]), &mut unenforced);
        assert_eq!(
            cut,
            Verdict {
                deny_ingress: true,
                deny_egress: true
            }
        );
        assert_eq!(
            verdict(&[&partition], &labels(&[("cut", "no")]), &mut unenforced),
            Verdict::default()
        );
        let both = verdict(
            &[&partition, &allow_web],
            &labels(&[("cut", "yes")]),
            &mut unenforced,
        );
        assert_eq!(
            both,
            Verdict {
                deny_ingress: false,
                deny_egress: true
            },
            "a rule allowing ingress wins"
        );
        assert!(unenforced.contains("lab/web"));
    }

    #[test]
    fn selectors_match_as_kubernetes_defines() {
        let s: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"app": "consumer"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}, {"key": "x", "operator": "DoesNotExist"}]
        }))
        .unwrap();
        assert!(matches(&s, &labels(&[("app", "consumer"), ("tier", "b")])));
        assert!(!matches(&s, &labels(&[("app", "consumer"), ("tier", "c")])));
        assert!(!matches(
            &s,
            &labels(&[("app", "consumer"), ("tier", "a"), ("x", "1")])
        ));
        assert!(matches(&LabelSelector::default(), &labels(&[])));
    }

    #[test]
    fn the_table_cuts_both_ways_but_lets_the_node_through() {
        let t = table(
            "autoscaling_lab_local_policy",
            Ipv4Addr::new(10, 243, 255, 1),
            &[(
                "alab0123456789a".into(),
                Verdict {
                    deny_ingress: true,
                    deny_egress: true,
                },
            )],
        );
        assert!(t.contains("iifname \"alab0123456789a\" ip daddr != 10.243.255.1 counter drop"));
        assert!(t.contains("oifname \"alab0123456789a\" ip saddr != 10.243.255.1 counter drop"));
        assert!(t.starts_with("table bridge autoscaling_lab_local_policy {}\nflush table"));
    }
}
