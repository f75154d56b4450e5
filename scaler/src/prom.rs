//! The Prometheus source: instant queries against the Prometheus HTTP API (`/api/v1/query`).

use serde::Deserialize;

use crate::client::error_chain;

/// The outcome of one instant query that returned successfully.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryValue {
    /// One number (a scalar, or a vector of exactly one sample).
    Number(f64),
    /// An empty vector, or NaN (e.g. `histogram_quantile` over no requests).
    Empty,
}

#[derive(Debug, Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ApiData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

/// Runs one instant query. Errors are human-readable causes (they end up in UNAVAILABLE messages and `/explain`).
pub async fn query(
    client: &reqwest::Client,
    base_url: &str,
    promql: &str,
) -> Result<QueryValue, String> {
    let url = format!("{base_url}/api/v1/query");
    let response = client
        .get(&url)
        .query(&[("query", promql)])
        .send()
        .await
        .map_err(|e| format!("GET {url}: {}", error_chain(&e)))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("GET {url}: {}", error_chain(&e)))?;
    let parsed: ApiResponse = serde_json::from_slice(&body).map_err(|e| {
        format!(
            "GET {url}: HTTP {status}, not a Prometheus API answer ({e}): {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )
    })?;
    if parsed.status != "success" {
        return Err(format!(
            "prometheus refused `{promql}`: {}: {}",
            parsed.error_type.unwrap_or_default(),
            parsed.error.unwrap_or_default()
        ));
    }
    let data = parsed
        .data
        .ok_or_else(|| format!("prometheus answered `{promql}` without data"))?;
    interpret(promql, &data.result_type, &data.result)
}

fn parse_sample_value(promql: &str, pair: &serde_json::Value) -> Result<f64, String> {
    pair.get(1)
        .and_then(|v| v.as_str())
        .and_then(|text| match text {
            "+Inf" => Some(f64::INFINITY),
            "-Inf" => Some(f64::NEG_INFINITY),
            "NaN" => Some(f64::NAN),
            _ => text.parse::<f64>().ok(),
        })
        .ok_or_else(|| format!("prometheus answered `{promql}` with a malformed sample: {pair}"))
}

fn interpret(
    promql: &str,
    result_type: &str,
    result: &serde_json::Value,
) -> Result<QueryValue, String> {
    let value = match result_type {
        "scalar" => parse_sample_value(promql, result)?,
        "vector" => {
            let samples = result
                .as_array()
                .ok_or_else(|| format!("prometheus answered `{promql}` with a malformed vector"))?;
            match samples.len() {
                0 => return Ok(QueryValue::Empty),
                1 => parse_sample_value(
                    promql,
                    samples[0].get("value").unwrap_or(&serde_json::Value::Null),
                )?,
                n => {
                    return Err(format!(
                        "`{promql}` returned {n} series; a trigger needs exactly one value (wrap it in sum() or similar)"
                    ));
                }
            }
        }
        other => {
            return Err(format!(
                "`{promql}` returned a {other}; a trigger needs a scalar or a one-element instant vector"
            ));
        }
    };
    if value.is_nan() {
        return Ok(QueryValue::Empty);
    }
    if value.is_infinite() {
        return Err(format!(
            "`{promql}` returned {value}, which cannot be scaled on"
        ));
    }
    Ok(QueryValue::Number(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn interprets_scalars_vectors_empty_and_nan() {
        assert_eq!(
            interpret("q", "scalar", &json!([1.0, "2.5"])),
            Ok(QueryValue::Number(2.5))
        );
        assert_eq!(
            interpret("q", "vector", &json!([{"metric": {}, "value": [1.0, "7"]}])),
            Ok(QueryValue::Number(7.0))
        );
        assert_eq!(interpret("q", "vector", &json!([])), Ok(QueryValue::Empty));
        assert_eq!(
            interpret(
                "q",
                "vector",
                &json!([{"metric": {}, "value": [1.0, "NaN"]}])
            ),
            Ok(QueryValue::Empty)
        );
        let many = interpret(
            "up",
            "vector",
            &json!([{"metric": {}, "value": [1, "1"]}, {"metric": {}, "value": [1, "1"]}]),
        )
        .unwrap_err();
        assert!(many.contains("2 series"), "{many}");
        assert!(
            interpret("q", "matrix", &json!([]))
                .unwrap_err()
                .contains("matrix")
        );
        assert!(interpret("q", "scalar", &json!([1.0, "+Inf"])).is_err());
        assert!(interpret("q", "scalar", &json!([1.0])).is_err());
    }
}
