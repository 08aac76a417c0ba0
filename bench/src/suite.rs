//! Runs every measurement and fills the table. Real processes over loopback: proxyconf-server
//! watching a Kubernetes API (the wire-protocol fake, so that a change reaches the server the way
//! it does in a cluster), the bare tonic server, and `proxyconf` runs.

use std::time::Duration;

use proxyconf_e2e::{
    attack::{PINGS_PER_SECOND, RESETS_PER_SECOND},
    fake_apiserver::FakeApiServer,
};
use proxyconf_proto::v1::{ResolveRequest, proxy_config_client::ProxyConfigClient};
use tonic::transport::Channel;

use crate::{
    abuse, client_runs, costs,
    fanout::{self, FanOut},
    file_source, load, machine, percentiles,
    processes::ServerProcess,
    report::Table,
};

/// How much of everything to run.
#[derive(Debug, Clone)]
pub struct Scale {
    pub resolve_samples: usize,
    pub unary_duration: Duration,
    pub unary_rounds: usize,
    pub rate: u32,
    pub rate_duration: Duration,
    pub client_runs: usize,
    pub subscribers: usize,
    pub subscriber_connections: usize,
    /// How many times the fan-out to `subscribers` is measured on each server.
    pub fan_out_rounds: usize,
    /// Subscribers of the file and directory sources.
    pub file_subscribers: usize,
    /// Connections of one Watch stream each, whose memory is measured.
    pub single_stream_connections: usize,
    /// Subscribers and connections of the fan-out near the wire's limit, when run.
    pub large_fan_out: Option<(usize, usize)>,
    pub idle_window: Duration,
    pub calls_counted: usize,
    /// Sequential `Resolve` calls per p99, and rounds, of the measurement under attack.
    pub attacked_calls: usize,
    pub attacked_rounds: usize,
}

impl Scale {
    /// The figures the README publishes.
    pub fn full() -> Self {
        Self {
            resolve_samples: 200,
            unary_duration: Duration::from_secs(5),
            unary_rounds: 3,
            rate: 5000,
            rate_duration: Duration::from_secs(5),
            client_runs: 100,
            subscribers: 10_000,
            subscriber_connections: 100,
            fan_out_rounds: 3,
            file_subscribers: 2_000,
            single_stream_connections: 5_000,
            large_fan_out: None,
            idle_window: Duration::from_secs(5),
            calls_counted: 1000,
            attacked_calls: 2000,
            attacked_rounds: 3,
        }
    }

    /// A tiny run that only proves everything works (CI).
    pub fn smoke() -> Self {
        Self {
            resolve_samples: 5,
            unary_duration: Duration::from_millis(300),
            unary_rounds: 1,
            rate: 200,
            rate_duration: Duration::from_millis(500),
            client_runs: 3,
            subscribers: 50,
            subscriber_connections: 5,
            fan_out_rounds: 1,
            file_subscribers: 20,
            single_stream_connections: 20,
            large_fan_out: None,
            idle_window: Duration::from_millis(500),
            calls_counted: 50,
            attacked_calls: 100,
            attacked_rounds: 1,
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// The fan-out near the wire's limit, on a server of its own (not in CI's smoke run: the
/// subscribers alone take minutes to open at the server's admission rate).
async fn large_fan_out(
    table: &mut Table,
    subscribers: usize,
    connections: usize,
) -> anyhow::Result<()> {
    let streams = subscribers.to_string();
    let (fan_out, answer) =
        fanout::kubernetes(subscribers, connections, &["--max-watch-streams", &streams]).await?;
    let floor = fanout::bare(subscribers, connections, &answer).await?;
    add_memory(table, &fan_out);
    add_fan_out(table, (&fan_out, &floor), 1, Duration::from_millis(1500));
    Ok(())
}

/// `Resolve` latency under rapid reset and PING floods, beside unloaded: the round with the median
/// ratio.
async fn under_attack(
    table: &mut Table,
    server: &ServerProcess,
    scale: &Scale,
) -> anyhow::Result<()> {
    let mut rounds = abuse::measure(server, scale.attacked_calls, scale.attacked_rounds).await?;
    rounds.sort_by(|a, b| a.ratio().total_cmp(&b.ratio()));
    let median = rounds.swap_remove(rounds.len() / 2);
    let (resets, pings) = (RESETS_PER_SECOND, PINGS_PER_SECOND);
    let of_rounds = median_of(scale.attacked_rounds);
    table.add(
        &format!(
            "`Resolve` p99, {} sequential calls, under rapid reset ({resets}/s) and PING floods \
             ({pings}/s){of_rounds}",
            scale.attacked_calls
        ),
        format!(
            "{} vs {} unloaded: ×{:.2} ({} resets, {} PINGs, {} GOAWAYs meanwhile)",
            ms(median.attacked_p99),
            ms(median.unloaded_p99),
            median.ratio(),
            median.attack.resets,
            median.attack.pings,
            median.attack.goaways
        ),
        "≤ 2× unloaded",
        Some(median.ratio() <= 2.0),
    );
    Ok(())
}

/// What a row's label says of its rounds: nothing for one.
fn median_of(rounds: usize) -> String {
    match rounds {
        1 => String::new(),
        n => format!(", median of {n} rounds"),
    }
}

/// The memory a connection costs the server once HTTP/2 is up, with one Watch stream on it (a
/// subscriber that does not share its connection): what deploy/base sizes its memory limit with,
/// at [`CONNECTION_KIB_BOUND`] each.
async fn connection_memory(table: &mut Table, connections: usize) -> anyhow::Result<()> {
    let (fan_out, _) = fanout::kubernetes(connections, connections, &[]).await?;
    let per_connection = fan_out.per_subscriber_kib();
    table.add(
        &format!("server memory with {connections} connections of one Watch stream each"),
        format!(
            "{per_connection:.1} KiB per connection ({:.1} → {:.1} MiB)",
            fan_out.rss_before_kib as f64 / 1024.0,
            fan_out.rss_with_kib as f64 / 1024.0
        ),
        &format!("≤ {CONNECTION_KIB_BOUND} KiB per connection"),
        Some(per_connection <= CONNECTION_KIB_BOUND as f64),
    );
    Ok(())
}

/// The memory per connection that deploy/base's sizing assumes (tests/tests/deploy.rs).
const CONNECTION_KIB_BOUND: u64 = 32;

/// The memory row of a fan-out run.
fn add_memory(table: &mut Table, fan_out: &FanOut) {
    table.add(
        &format!(
            "server memory with {} idle subscribers",
            fan_out.subscribers
        ),
        format!(
            "{:.2} KiB per subscriber ({:.1} → {:.1} MiB)",
            fan_out.per_subscriber_kib(),
            fan_out.rss_before_kib as f64 / 1024.0,
            fan_out.rss_with_kib as f64 / 1024.0
        ),
        "≤ 4 KiB per subscriber",
        Some(fan_out.per_subscriber_kib() <= 4.0),
    );
}

/// A fan-out row: proxyconf-server beside the bare floor, against `target` for the p99. With
/// several `rounds`, each side's round with the median p99.
fn add_fan_out(
    table: &mut Table,
    (fan_out, floor): (&FanOut, &FanOut),
    rounds: usize,
    target: Duration,
) {
    let median = median_of(rounds);
    table.add(
        &format!(
            "one ConfigMap change reaches {} subscribers over {} connections{median}",
            fan_out.subscribers, fan_out.connections
        ),
        format!(
            "p50 {}, p99 {}, server CPU {:.0} µs a message; bare tonic: p50 {}, p99 {}, {:.0} µs",
            ms(fan_out.p50),
            ms(fan_out.p99),
            fan_out.cpu_per_message_us(),
            ms(floor.p50),
            ms(floor.p99),
            floor.cpu_per_message_us()
        ),
        &format!("p99 ≤ {} ms", target.as_millis()),
        Some(fan_out.p99 <= target),
    );
}

/// Runs everything at `scale`.
pub async fn run(scale: &Scale) -> anyhow::Result<Table> {
    let mut table = Table {
        machine: machine::describe(),
        rows: Vec::new(),
    };
    in_process_costs(&mut table, scale);

    // The real server on a Kubernetes API.
    let api = FakeApiServer::start("konflux-info", "cluster-config").await;
    fanout::apply(&api, &fanout::npm_data(""));
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, api.kubeconfig())?;
    let server = ServerProcess::proxyconf(&kubeconfig)?;
    let answer = fanout::first_answer(&server.address).await?;
    let channels = load::connect(&server.address, 8).await?;
    idle(&mut table, &server, scale).await?;
    api_requests(&mut table, &api, &channels[0], scale).await?;
    unary(&mut table, &channels, &answer, scale).await?;
    client_process(&mut table, &server, scale)?;
    under_attack(&mut table, &server, scale).await?;
    fan_out(&mut table, &server, &api, &answer, scale).await?;
    // The Kubernetes-backed server ends before the file sources are measured on this machine.
    drop(server);
    file_source::file_change(&mut table, scale.file_subscribers).await?;
    file_source::directory_swap(&mut table, scale.file_subscribers).await?;
    connection_memory(&mut table, scale.single_stream_connections).await?;
    if let Some((subscribers, connections)) = scale.large_fan_out {
        large_fan_out(&mut table, subscribers, connections).await?;
    }
    Ok(table)
}

/// Resolving ConfigMaps in process: time, and the memory a snapshot holds.
fn in_process_costs(table: &mut Table, scale: &Scale) {
    let typical = costs::typical();
    let resolve_typical = costs::resolve_time(&typical, scale.resolve_samples);
    table.add(
        "resolve a typical ConfigMap (10 keys) into a snapshot (median)",
        us(resolve_typical),
        "≤ 20 µs",
        Some(resolve_typical <= Duration::from_micros(20)),
    );
    let largest = costs::large(5000);
    let resolve_largest = costs::resolve_time(&largest, scale.resolve_samples.div_ceil(10));
    table.add(
        &format!(
            "resolve a 1 MiB ConfigMap ({} KiB, 5,000 package managers) (median)",
            costs::size_of(&largest) / 1024
        ),
        ms(resolve_largest),
        "≤ 5 ms",
        Some(resolve_largest <= Duration::from_millis(5)),
    );
    let half = costs::resolved_bytes(&costs::large(2500));
    let full = costs::resolved_bytes(&largest);
    let ratio = full as f64 / half.max(1) as f64;
    table.add(
        "snapshot memory: 5,000 vs 2,500 package managers",
        format!(
            "{} KiB vs {} KiB (×{ratio:.2} for ×2 input)",
            full / 1024,
            half / 1024
        ),
        "linear in size",
        Some((1.8..=2.2).contains(&ratio)),
    );
}

/// The synced server without clients: memory, and CPU over a quiet window.
async fn idle(table: &mut Table, server: &ServerProcess, scale: &Scale) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = server.rss_kib()?;
    let ticks_before = server.cpu_ticks()?;
    tokio::time::sleep(scale.idle_window).await;
    let idle_ticks = server.cpu_ticks()? - ticks_before;
    table.add(
        "server idle (synced, no clients): RSS",
        format!("{:.1} MiB", idle_rss as f64 / 1024.0),
        "≤ 20 MiB",
        Some(idle_rss <= 20 * 1024),
    );
    table.add(
        &format!("server idle: CPU over {:?}", scale.idle_window),
        format!("{idle_ticks} ticks (1 tick = 10 ms)"),
        "none",
        Some(idle_ticks == 0),
    );
    Ok(())
}

/// Kubernetes API requests per client call (none: the server answers from its snapshot).
async fn api_requests(
    table: &mut Table,
    api: &FakeApiServer,
    channel: &Channel,
    scale: &Scale,
) -> anyhow::Result<()> {
    let mut probe = ProxyConfigClient::new(channel.clone());
    let before = api.requests().len();
    for _ in 0..scale.calls_counted {
        probe.resolve(ResolveRequest::default()).await?;
    }
    let extra = api.requests().len() - before;
    table.add(
        &format!(
            "Kubernetes API requests for {} Resolve calls",
            scale.calls_counted
        ),
        extra.to_string(),
        "0",
        Some(extra == 0),
    );
    Ok(())
}

/// Unary throughput and latency at a fixed rate, beside the bare floor answering `answer` (an
/// encoded `Resolution`); the rounds alternate so that both share the machine's noise.
async fn unary(
    table: &mut Table,
    channels: &[Channel],
    answer: &[u8],
    scale: &Scale,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let answer_file = dir.path().join("answer.bin");
    std::fs::write(&answer_file, answer)?;
    let bare = ServerProcess::bare(&answer_file)?;
    let bare_channels = load::connect(&bare.address, 8).await?;
    let (mut real_rps, mut bare_rps) = (Vec::new(), Vec::new());
    let mut real_latencies = Vec::new();
    for _ in 0..scale.unary_rounds {
        let (rps, latencies) = load::closed_loop(channels, 256, scale.unary_duration).await?;
        real_rps.push(rps);
        real_latencies = latencies;
        bare_rps.push(
            load::closed_loop(&bare_channels, 256, scale.unary_duration)
                .await?
                .0,
        );
    }
    real_rps.sort_by(f64::total_cmp);
    bare_rps.sort_by(f64::total_cmp);
    let (real, floor) = (real_rps[real_rps.len() / 2], bare_rps[bare_rps.len() / 2]);
    let (mut bare_latencies, _) =
        load::open_loop(&bare_channels, scale.rate, scale.rate_duration).await?;
    let (bare_p50, bare_p99) = percentiles(&mut bare_latencies);
    let (p50, p99) = percentiles(&mut real_latencies);
    table.add(
        &format!(
            "unary Resolve, 256 concurrent over 8 connections ({} B answer), median of {} rounds",
            answer.len(),
            scale.unary_rounds
        ),
        format!(
            "{real:.0} req/s vs bare tonic {floor:.0} req/s = ×{:.2} (p50 {}, p99 {})",
            real / floor,
            ms(p50),
            ms(p99)
        ),
        "≥ 0.8× bare",
        Some(real >= 0.8 * floor),
    );
    drop(bare_channels);
    drop(bare);

    // Latency at a fixed rate.
    let (mut latencies, achieved) =
        load::open_loop(channels, scale.rate, scale.rate_duration).await?;
    let (p50, p99) = percentiles(&mut latencies);
    table.add(
        &format!("Resolve latency at {} requests/s (open loop)", scale.rate),
        format!(
            "p50 {}, p99 {} (achieved {achieved:.0}/s); bare tonic: p50 {}, p99 {}",
            ms(p50),
            ms(p99),
            ms(bare_p50),
            ms(bare_p99)
        ),
        "p99 ≤ 2 ms",
        Some(p99 <= Duration::from_millis(2)),
    );
    Ok(())
}

/// `proxyconf env` as a build step runs it: a whole process.
fn client_process(table: &mut Table, server: &ServerProcess, scale: &Scale) -> anyhow::Result<()> {
    let (mut times, peaks) = client_runs::env_runs(&server.address, scale.client_runs)?;
    let (p50, p99) = percentiles(&mut times);
    let peak_rss = peaks.iter().copied().max().unwrap_or(0);
    table.add(
        &format!("`proxyconf env` whole process, {} runs", scale.client_runs),
        format!(
            "median {}, p99 {}, peak RSS (largest run) {:.1} MiB",
            ms(p50),
            ms(p99),
            peak_rss as f64 / 1024.0
        ),
        "median ≤ 5 ms, RSS ≤ 15 MiB",
        Some(p50 <= Duration::from_millis(5) && peak_rss <= 15 * 1024),
    );
    Ok(())
}

/// Watch fan-out and the memory of idle subscribers, beside the bare tonic floor.
async fn fan_out(
    table: &mut Table,
    server: &ServerProcess,
    api: &FakeApiServer,
    answer: &[u8],
    scale: &Scale,
) -> anyhow::Result<()> {
    let (subscribers, connections) = (scale.subscribers, scale.subscriber_connections);
    let (mut real, mut floor) = (Vec::new(), Vec::new());
    // Alternating, so that both servers share the machine's noise.
    for round in 0..scale.fan_out_rounds {
        let change = fanout::npm_data(&format!("changed-{round}/"));
        real.push(
            fanout::measure(server, subscribers, connections, async {
                fanout::apply(api, &change);
                Ok(())
            })
            .await?,
        );
        floor.push(fanout::bare(subscribers, connections, answer).await?);
    }
    // The first round's: later rounds start with the memory the earlier subscribers left.
    add_memory(table, &real[0]);
    add_fan_out(
        table,
        (&median_round(real), &median_round(floor)),
        scale.fan_out_rounds,
        Duration::from_millis(100),
    );
    Ok(())
}

/// The round with the median p99.
fn median_round(mut rounds: Vec<FanOut>) -> FanOut {
    rounds.sort_by_key(|round| round.p99);
    rounds.swap_remove(rounds.len() / 2)
}
