//! `generator verify`: read a topic back from the beginning with a fresh consumer group, keep one test run's
//! messages, and report per producer what was received, what should have been (highest sequence + 1), the gaps
//! (lost) and the repeats (duplicates). With `--processed`, `<topic>.processed` too, which the consumer's Kafka
//! workers write after processing, held against what was delivered: a delivered message with no processed record is
//! lost, the last ones included. Workers behind their lag are waited for (the topic read again) until every delivered
//! message is processed or the timeout. Each reading is bounded: up to the high watermarks found at its start, or the
//! timeout.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use contract::kafka::{Message, Processed, processed_topic};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::args::VerifyArgs;
use load::error::AppError;
use load::exit;
use load::output::OutputFormat;

/// Ranges and sequences listed in a report at most (the counts are always complete).
const LIST_LIMIT: usize = 50;

/// One producer's delivery figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProducerCheck {
    pub producer: String,
    /// Messages read (repeats included).
    pub received: u64,
    /// Delivered: highest sequence + 1. Processed: the distinct sequences delivered.
    pub expected: u64,
    /// Delivered: sequences below `expected` never read. Processed: sequences delivered and never processed.
    pub lost: u64,
    /// Reads beyond the first of a sequence.
    pub duplicates: u64,
    /// Lost sequences as inclusive ranges `[first, last]` (the first 50).
    pub lost_ranges: Vec<[u64; 2]>,
    /// Sequences read more than once (the first 50).
    pub duplicated: Vec<u64>,
}

/// One topic's check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicCheck {
    pub topic: String,
    /// Records read from the topic (every test run).
    pub records_read: u64,
    /// Records of other test runs or not in the expected format.
    pub skipped: u64,
    /// Whether reading reached the high watermarks before the timeout.
    pub complete: bool,
    pub producers: Vec<ProducerCheck>,
    pub lost: u64,
    pub duplicates: u64,
    /// Processed: how long `verify` waited for the workers to process every delivered message (seconds), and how
    /// many times it read the topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waited_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readings: Option<u32>,
}

/// The `generator verify` report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyReport {
    pub test_run: String,
    pub delivered: TopicCheck,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processed: Option<TopicCheck>,
    pub exit_code: i32,
    pub verdict: String,
}

/// What a record means to `verify`: (test run, producer, sequence), or `None` for a record of another format.
type Parse = fn(&[u8]) -> Option<(String, String, u64)>;

/// Builds the per-producer figures from the sequences read.
pub fn check_sequences(sequences: BTreeMap<String, Vec<u64>>) -> Vec<ProducerCheck> {
    sequences
        .into_iter()
        .map(|(producer, mut seqs)| {
            seqs.sort_unstable();
            let received = seqs.len() as u64;
            let expected = seqs.last().map_or(0, |m| m + 1);
            let (mut lost, mut duplicates) = (0, 0);
            let (mut lost_ranges, mut duplicated) = (Vec::new(), Vec::new());
            let mut next = 0u64;
            let mut prev: Option<u64> = None;
            for s in seqs {
                if prev == Some(s) {
                    duplicates += 1;
                    if duplicated.last() != Some(&s) && duplicated.len() < LIST_LIMIT {
                        duplicated.push(s);
                    }
                    continue;
                }
                if s > next {
                    lost += s - next;
                    if lost_ranges.len() < LIST_LIMIT {
                        lost_ranges.push([next, s - 1]);
                    }
                }
                next = s + 1;
                prev = Some(s);
            }
            ProducerCheck {
                producer,
                received,
                expected,
                lost,
                duplicates,
                lost_ranges,
                duplicated,
            }
        })
        .collect()
}

/// What each producer's delivered messages became: `processed` sequences held against the `delivered` ones. Lost:
/// delivered and never processed; duplicates: processed more than once. A producer seen only in `processed` keeps
/// [`check_sequences`]'s figures.
pub fn check_processed(
    processed: BTreeMap<String, Vec<u64>>,
    delivered: &BTreeMap<String, BTreeSet<u64>>,
) -> Vec<ProducerCheck> {
    let mut checks: BTreeMap<String, ProducerCheck> = BTreeMap::new();
    for (producer, wanted) in delivered {
        let mut seqs = processed.get(producer).cloned().unwrap_or_default();
        seqs.sort_unstable();
        let mut duplicated = Vec::new();
        let mut duplicates = 0;
        for pair in seqs.windows(2) {
            if pair[0] == pair[1] {
                duplicates += 1;
                if duplicated.last() != Some(&pair[0]) && duplicated.len() < LIST_LIMIT {
                    duplicated.push(pair[0]);
                }
            }
        }
        let done: BTreeSet<u64> = seqs.iter().copied().collect();
        let mut lost_ranges: Vec<[u64; 2]> = Vec::new();
        let mut lost = 0;
        for s in wanted.difference(&done) {
            lost += 1;
            let extends = lost_ranges.last().is_some_and(|range| range[1] + 1 == *s);
            if extends {
                if let Some(range) = lost_ranges.last_mut() {
                    range[1] = *s;
                }
            } else if lost_ranges.len() < LIST_LIMIT {
                lost_ranges.push([*s, *s]);
            }
        }
        checks.insert(
            producer.clone(),
            ProducerCheck {
                producer: producer.clone(),
                received: seqs.len() as u64,
                expected: wanted.len() as u64,
                lost,
                duplicates,
                lost_ranges,
                duplicated,
            },
        );
    }
    let strangers: BTreeMap<String, Vec<u64>> = processed
        .into_iter()
        .filter(|(producer, _)| !delivered.contains_key(producer))
        .collect();
    for check in check_sequences(strangers) {
        checks.insert(check.producer.clone(), check);
    }
    checks.into_values().collect()
}

/// One reading of a topic: the records read and, per producer, the sequences of the test run.
struct Reading {
    records_read: u64,
    skipped: u64,
    complete: bool,
    sequences: BTreeMap<String, Vec<u64>>,
}

impl Reading {
    fn check(self, topic: &str, producers: Vec<ProducerCheck>) -> TopicCheck {
        TopicCheck {
            topic: topic.to_string(),
            records_read: self.records_read,
            skipped: self.skipped,
            complete: self.complete,
            lost: producers.iter().map(|p| p.lost).sum(),
            duplicates: producers.iter().map(|p| p.duplicates).sum(),
            producers,
            waited_s: None,
            readings: None,
        }
    }
}

/// Between readings of `<topic>.processed` while the workers catch up.
const PROCESSED_POLL: Duration = Duration::from_secs(1);

/// The least time a reading is started with: one started with less than this cannot even connect (librdkafka then
/// reports a broker transport failure, not a timeout), so the wait ends on the reading before.
const LEAST_READING: Duration = Duration::from_secs(1);

/// Reads `topic` from the beginning up to the high watermarks at the time of the call (or `timeout`), and returns
/// the (producer, sequence) pairs of `test_run` that `parse` finds.
fn read_topic(
    brokers: &str,
    topic: &str,
    test_run: &str,
    timeout: Duration,
    parse: Parse,
) -> Result<Reading, AppError> {
    let deadline = Instant::now() + timeout;
    let group = format!("generator-verify-{}", super::produce::fresh_test_run());
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", &group)
        .set("client.id", "autoscaling-lab-generator-verify")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("allow.auto.create.topics", "false")
        .create()
        .map_err(|e| AppError::usage(format!("--brokers {brokers:?}: {e}")))?;
    let left = || deadline.saturating_duration_since(Instant::now());
    let metadata = consumer
        .fetch_metadata(Some(topic), left().min(Duration::from_secs(15)))
        .map_err(|e| AppError::Runtime(format!("cannot read the metadata of {topic}: {e}")))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(AppError::Runtime(format!(
            "topic {topic} does not exist or has no partitions"
        )));
    }
    // Partition -> the high watermark to reach.
    let mut pending: BTreeMap<i32, i64> = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, *p, left().min(Duration::from_secs(15)))
            .map_err(|e| {
                AppError::Runtime(format!("cannot read the watermarks of {topic}/{p}: {e}"))
            })?;
        if high > low {
            pending.insert(*p, high);
        }
        assignment
            .add_partition_offset(topic, *p, Offset::Beginning)
            .map_err(|e| AppError::Runtime(e.to_string()))?;
    }
    // Assigned, not subscribed: the fresh group never waits for a rebalance and commits nothing.
    consumer
        .assign(&assignment)
        .map_err(|e| AppError::Runtime(format!("cannot assign {topic}: {e}")))?;
    let (mut records_read, mut skipped) = (0u64, 0u64);
    let mut sequences: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    while !pending.is_empty() && Instant::now() < deadline {
        let Some(result) = consumer.poll(left().min(Duration::from_millis(200))) else {
            continue;
        };
        let record = result.map_err(|e| AppError::Runtime(format!("reading {topic}: {e}")))?;
        if let Some(high) = pending.get(&record.partition())
            && record.offset() + 1 >= *high
        {
            pending.remove(&record.partition());
        }
        records_read += 1;
        match record.payload().and_then(parse) {
            Some((run, producer, seq)) if run == test_run => {
                sequences.entry(producer).or_default().push(seq)
            }
            _ => skipped += 1,
        }
    }
    Ok(Reading {
        records_read,
        skipped,
        complete: pending.is_empty(),
        sequences,
    })
}

/// Reads `<topic>.processed` until every `delivered` message has its processed record, or `wait_until`; each
/// reading ends by `deadline`. The last complete reading is the check; a reading that fails after one that did not
/// is reported on stderr and the wait goes on, so one dropped connection does not void what was already read.
async fn await_processed(
    args: &VerifyArgs,
    delivered: BTreeMap<String, BTreeSet<u64>>,
    deadline: Instant,
    wait_until: Instant,
) -> Result<TopicCheck, AppError> {
    let topic = processed_topic(&args.topic);
    let started = Instant::now();
    // The next reading starts within the wait and has its least time before the deadline.
    let another_reading_fits = || {
        let next = Instant::now() + PROCESSED_POLL;
        next <= wait_until && next + LEAST_READING <= deadline
    };
    let mut readings = 0u32;
    let mut last: Option<TopicCheck> = None;
    loop {
        let (brokers, name, run) = (args.brokers.clone(), topic.clone(), args.test_run.clone());
        // The first reading always gets its budget: with none there is no check at all.
        let timeout = deadline
            .saturating_duration_since(Instant::now())
            .max(if last.is_none() {
                LEAST_READING
            } else {
                Duration::ZERO
            });
        let reading = tokio::task::spawn_blocking(move || {
            read_topic(&brokers, &name, &run, timeout, parse_processed)
        })
        .await
        .map_err(|e| AppError::Runtime(e.to_string()))?;
        match reading {
            Ok(reading) => {
                readings += 1;
                let producers = check_processed(reading.sequences.clone(), &delivered);
                let mut check = reading.check(&topic, producers);
                check.waited_s = Some(started.elapsed().as_secs_f64());
                check.readings = Some(readings);
                if check.lost == 0 || !another_reading_fits() {
                    return Ok(check);
                }
                last = Some(check);
            }
            Err(e) => match last.take() {
                None => return Err(e),
                Some(check) => {
                    eprintln!(
                        "generator verify: a reading of {topic} failed ({e}); the check stands on reading {readings}"
                    );
                    if !another_reading_fits() {
                        return Ok(check);
                    }
                    last = Some(check);
                }
            },
        }
        tokio::time::sleep(PROCESSED_POLL).await;
    }
}

fn parse_message(bytes: &[u8]) -> Option<(String, String, u64)> {
    let m: Message = serde_json::from_slice(bytes).ok()?;
    Some((m.metadata.test_run, m.metadata.producer, m.sequence))
}

fn parse_processed(bytes: &[u8]) -> Option<(String, String, u64)> {
    let p: Processed = serde_json::from_slice(bytes).ok()?;
    Some((p.test_run, p.producer, p.sequence))
}

fn topic_text(check: &TopicCheck, what: &str) -> String {
    let mut s = format!(
        "{what} ({}): {} records read, {} of other runs or formats, {}\n",
        check.topic,
        check.records_read,
        check.skipped,
        if check.complete {
            "read to the end"
        } else {
            "TIMED OUT before the end"
        }
    );
    if let (Some(waited), Some(readings)) = (check.waited_s, check.readings) {
        let lost = check.lost;
        s.push_str(&if lost == 0 {
            format!("  every delivered message processed (waited {waited:.1} s, {readings} reading(s))\n")
        } else {
            format!("  {lost} delivered message(s) unprocessed at the end of the wait ({waited:.1} s, {readings} reading(s))\n")
        });
    }
    s.push_str(&format!(
        "  {:<28} {:>10} {:>10} {:>8} {:>10}\n",
        "producer", "received", "expected", "lost", "duplicates"
    ));
    for p in &check.producers {
        s.push_str(&format!(
            "  {:<28} {:>10} {:>10} {:>8} {:>10}\n",
            p.producer, p.received, p.expected, p.lost, p.duplicates
        ));
        if !p.lost_ranges.is_empty() {
            let ranges: Vec<String> = p
                .lost_ranges
                .iter()
                .map(|[a, b]| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("{a}-{b}")
                    }
                })
                .collect();
            s.push_str(&format!("    lost sequences: {}\n", ranges.join(", ")));
        }
        if !p.duplicated.is_empty() {
            let d: Vec<String> = p.duplicated.iter().map(u64::to_string).collect();
            s.push_str(&format!("    duplicated sequences: {}\n", d.join(", ")));
        }
    }
    s
}

/// Runs `generator verify`; returns the exit code.
pub async fn verify_command(args: VerifyArgs) -> Result<i32, AppError> {
    let report = verify_report(&args).await?;
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string(&report).expect("serializes")),
        OutputFormat::Text => {
            print!("{}", topic_text(&report.delivered, "delivered"));
            if let Some(p) = &report.processed {
                print!("{}", topic_text(p, "processed"));
            }
            println!("verdict: {}", report.verdict);
        }
    }
    Ok(report.exit_code)
}

/// The check `generator verify` prints, for callers that read it in-process (the lab's Kafka scenario).
pub async fn verify_report(args: &VerifyArgs) -> Result<VerifyReport, AppError> {
    let started = Instant::now();
    let (brokers, topic, run, timeout) = (
        args.brokers.clone(),
        args.topic.clone(),
        args.test_run.clone(),
        args.timeout,
    );
    let reading = tokio::task::spawn_blocking({
        let topic = topic.clone();
        move || read_topic(&brokers, &topic, &run, timeout, parse_message)
    })
    .await
    .map_err(|e| AppError::Runtime(e.to_string()))??;
    let sent: BTreeMap<String, BTreeSet<u64>> = reading
        .sequences
        .iter()
        .map(|(producer, seqs)| (producer.clone(), seqs.iter().copied().collect()))
        .collect();
    let delivered = {
        let producers = check_sequences(reading.sequences.clone());
        reading.check(&topic, producers)
    };
    let processed = if args.processed {
        let wait_until = Instant::now() + args.processed_wait.unwrap_or(args.timeout);
        Some(await_processed(args, sent, started + args.timeout, wait_until).await?)
    } else {
        None
    };
    let checks: Vec<&TopicCheck> = std::iter::once(&delivered).chain(&processed).collect();
    let lost: u64 = checks.iter().map(|c| c.lost).sum();
    let duplicates: u64 = checks.iter().map(|c| c.duplicates).sum();
    let empty = checks.iter().any(|c| c.producers.is_empty());
    let incomplete = checks.iter().any(|c| !c.complete);
    let exit_code = if lost > 0 || empty {
        exit::THRESHOLDS_BREACHED
    } else {
        exit::OK
    };
    let verdict = if empty {
        format!(
            "FAILED: no message of test run {} found{}",
            args.test_run,
            if incomplete {
                " (reading timed out)"
            } else {
                ""
            }
        )
    } else if lost > 0 {
        format!(
            "FAILED: {lost} messages lost, {duplicates} duplicates in test run {}",
            args.test_run
        )
    } else {
        format!(
            "OK: 0 lost, {duplicates} duplicates in test run {}{}",
            args.test_run,
            if incomplete {
                " (reading timed out: later messages were not checked)"
            } else {
                ""
            }
        )
    };
    Ok(VerifyReport {
        test_run: args.test_run.clone(),
        delivered,
        processed,
        exit_code,
        verdict,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_and_repeats_are_counted_exactly() {
        let mut input = BTreeMap::new();
        input.insert("a".to_string(), vec![0, 1, 2, 4, 5, 5, 8, 9, 9, 9]);
        input.insert("b".to_string(), vec![3, 2, 1, 0]);
        let checks = check_sequences(input);
        let a = &checks[0];
        assert_eq!(
            (a.received, a.expected, a.lost, a.duplicates),
            (10, 10, 3, 3)
        );
        assert_eq!(a.lost_ranges, vec![[3, 3], [6, 7]]);
        assert_eq!(a.duplicated, vec![5, 9]);
        let b = &checks[1];
        assert_eq!((b.received, b.expected, b.lost, b.duplicates), (4, 4, 0, 0));
    }

    #[test]
    fn processed_is_held_against_what_was_delivered_the_last_messages_included() {
        let delivered: BTreeMap<String, BTreeSet<u64>> = [
            ("p".to_string(), (0..10).collect()),
            ("tail".to_string(), [0, 1, 2].into()),
        ]
        .into();
        let processed: BTreeMap<String, Vec<u64>> = [
            ("p".to_string(), vec![9, 0, 1, 1, 2, 5]),
            ("tail".to_string(), vec![0]),
            ("stranger".to_string(), vec![0, 2]),
        ]
        .into();
        let checks = check_processed(processed, &delivered);
        let by_name = |n: &str| checks.iter().find(|c| c.producer == n).unwrap();
        let p = by_name("p");
        assert_eq!(
            (p.received, p.expected, p.lost, p.duplicates),
            (6, 10, 5, 1)
        );
        assert_eq!(p.lost_ranges, vec![[3, 4], [6, 8]]);
        assert_eq!(p.duplicated, vec![1]);
        // Highest-sequence-based gaps could not see these: nothing after sequence 0 was processed.
        let tail = by_name("tail");
        assert_eq!((tail.lost, tail.lost_ranges.clone()), (2, vec![[1, 2]]));
        let stranger = by_name("stranger");
        assert_eq!((stranger.expected, stranger.lost), (3, 1));
    }
}
