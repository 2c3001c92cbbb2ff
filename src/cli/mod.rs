//! The command line: [`args`] holds the clap definitions (their doc comments are the `--help`
//! text); this module dispatches them to one function per command, which calls into the library
//! and adds context to its errors with `anyhow`.

mod args;
mod iwan;

pub use args::{
    BenchCommand, BenchModelArgs, BenchSearchArgs, Cli, Command, DataCommand, FetchArgs,
};

use crate::bench::search::{self, BenchOptions};
use crate::config::{self, Loaded};
use crate::data::cifar::{Cifar100, IMAGE_BYTES, SplitName};
use crate::data::hierarchy::Hierarchy;
use crate::data::summary::DataSummary;
use crate::data::usf::UsfNorms;
use crate::data::{DataRoot, fetch};
use crate::experiment::{self, RunOptions};
use crate::report::check;
use anyhow::{Context, Result, bail};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let progress = !cli.quiet && std::io::stderr().is_terminal();
    let root = cli.data_root.as_deref();
    let done = |r: Result<()>| r.map(|()| ExitCode::SUCCESS);
    match cli.command {
        Command::Run {
            args,
            sweep,
            out,
            cache,
            no_verify,
            run_index,
            slurm,
        } => {
            let opts = RunOptions {
                out,
                cache,
                data_root: cli.data_root.clone(),
                progress,
                lines: !cli.quiet,
                no_verify,
                run_index,
            };
            let loaded = (|| {
                let (configs, overrides) = split_args(&args)?;
                if configs.len() > 1 {
                    bail!(
                        "one config at a time: got {} ({}); to run several, call harness run \
                         once each",
                        configs.len(),
                        configs
                            .iter()
                            .map(|c| c.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                with_command_line(
                    load_config(configs.first().map(PathBuf::as_path))?,
                    &overrides,
                    &sweep,
                )
            })();
            match loaded {
                Err(e) => Err(e),
                Ok(loaded) if slurm.slurm => done(submit_slurm(&loaded, &opts, &slurm)),
                Ok(loaded) => done(run_experiment(&loaded, opts)),
            }
        }
        Command::Status {
            experiment_dir,
            aggregate,
            json,
        } => status(&experiment_dir, aggregate, json),
        Command::Validate { args, sweep, brief } => validate(&args, &sweep, brief),
        Command::Semantics { out, d } => done(semantics(&out, d, root)),
        Command::Check {
            run_dir,
            baseline,
            tolerance,
            time_ratio,
            time_floor,
            both_ways,
        } => check_run(
            &run_dir,
            &baseline,
            check::Tolerances {
                quality: tolerance,
                time_ratio,
                time_floor_s: time_floor,
                both_ways,
            },
        ),
        Command::Report { dir } => done(report(&dir)),
        Command::Compare { dirs, out } => done(compare(&dirs, &out)),
        Command::Evaluate {
            rankings,
            db,
            protocol,
            ks,
            method,
            out,
        } => done(evaluate(
            &rankings,
            db,
            protocol.map(Into::into),
            &ks,
            method,
            out,
            root,
        )),
        Command::Serve { run_dir, addr } => done(serve(&run_dir, addr, root)),
        Command::Data(DataCommand::Info { root: own }) => done(data_info(own.as_deref().or(root))),
        Command::Data(DataCommand::Fetch(args)) => done(data_fetch(&args, root, progress)),
        Command::Bench(BenchCommand::Search(a)) => done(bench_search(a)),
        Command::Bench(BenchCommand::Model(a)) => done(bench_model(&a, root)),
        Command::Bench(BenchCommand::Iwan(a)) => done(bench_iwan(a, root)),
        Command::Bench(BenchCommand::Scale(a)) => done(bench_scale(a, root)),
        Command::Bench(BenchCommand::Peak(a)) => done(bench_peak(&a)),
        Command::Iwan(cmd) => done(iwan::run(cmd, root)),
    }
}

/// `harness run`: every run of the config, then one line per run folder.
fn run_experiment(loaded: &Loaded, opts: RunOptions) -> Result<()> {
    let outcomes = experiment::run(loaded, &opts).with_context(|| {
        format!(
            "experiment `{}` ({}) failed",
            loaded.config.name, loaded.origin
        )
    })?;
    for o in &outcomes {
        let reused = if o.reused.is_empty() {
            String::new()
        } else {
            format!(" (reused: {})", o.reused.join(", "))
        };
        println!("results: {}{reused}", o.dir.display());
    }
    if opts.lines {
        let dirs: Vec<PathBuf> = outcomes.iter().map(|o| o.dir.clone()).collect();
        let exp_dir = experiment::experiment_dir(loaded, &opts);
        print!("{}", experiment::render::console_summary(&exp_dir, &dirs)?);
    }
    Ok(())
}

/// `harness run --slurm`: writes the batch scripts, submits them, prints the job ids.
fn submit_slurm(loaded: &Loaded, opts: &RunOptions, args: &args::SlurmArgs) -> Result<()> {
    if opts.run_index.is_some() {
        bail!("--run-index selects the run inside one array task; --slurm submits them all");
    }
    let settings = args.over(loaded.config.slurm.as_ref());
    if let Err((field, message)) = config::validate_slurm(&settings) {
        bail!("--{}: {message}", field.replace('_', "-"));
    }
    let sub = crate::slurm::submit(loaded, opts, &settings, args.resume)
        .with_context(|| format!("submitting `{}` to Slurm", loaded.config.name))?;
    let exp = sub.experiment_dir.display();
    for s in &sub.skipped {
        println!("skipped: run {} {} ({})", s.index, s.id, s.state.label());
    }
    match &sub.array_job {
        Some(id) => println!(
            "submitted: array job {id} with {} task(s) (runs {}), logs in {exp}/slurm/logs/",
            sub.runs.len(),
            sub.runs
                .iter()
                .map(|r| r.0.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
        None => println!("submitted: no run (every run is done or running)"),
    }
    if let Some(id) = &sub.aggregate_job {
        println!("submitted: aggregation job {id}, after the array (done or not)");
    }
    println!("follow with: harness status {exp}");
    Ok(())
}

/// `harness status`: each run's state; with `aggregate`, also the sweep tables and status.md.
fn status(dir: &Path, aggregate: bool, json: bool) -> Result<ExitCode> {
    use experiment::status::{self, RunState};
    let runs = if aggregate {
        let a = status::aggregate(dir).with_context(|| format!("aggregating {}", dir.display()))?;
        for p in &a.written {
            eprintln!("wrote {}", p.display());
        }
        a.runs
    } else {
        status::experiment_status(dir).with_context(|| format!("reading {}", dir.display()))?
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
    } else {
        print!("{}", status::status_table(&runs));
    }
    // The aggregation job succeeds when it wrote its files; a plain status says with its exit
    // code whether everything is done.
    Ok(
        if aggregate || runs.iter().all(|r| r.state == RunState::Done) {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        },
    )
}

/// `harness semantics`: the class similarity and embedding, written to `out`.
fn semantics(out: &Path, d: u32, data_root: Option<&Path>) -> Result<()> {
    let root = DataRoot::resolve(data_root, None)?;
    experiment::semantics_stage(&root, d as usize, out)
        .with_context(|| format!("building the class embedding into {}", out.display()))?;
    println!(
        "wrote {}, {} and the heat map {}",
        out.join("similarity.csv").display(),
        out.join("class_embedding.csv").display(),
        out.join("similarity.{png,svg}").display()
    );
    Ok(())
}

/// `harness compare`: the comparison on stdout and into `out`.
fn compare(dirs: &[PathBuf], out: &Path) -> Result<()> {
    let (md, written) = experiment::compare::compare(dirs, out)
        .with_context(|| format!("comparing into {}", out.display()))?;
    print!("{md}");
    for p in written {
        println!("results: {}", p.display());
    }
    Ok(())
}

/// `harness evaluate`: every metric of an external rankings file, into `<out>/metrics.csv`.
fn evaluate(
    path: &Path,
    db: SplitName,
    protocol: Option<config::Protocol>,
    ks: &[usize],
    method: Option<String>,
    out: Option<PathBuf>,
    data_root: Option<&Path>,
) -> Result<()> {
    use crate::eval::external::Rankings;
    use crate::eval::retrieval::{metric_values, score_queries};
    let protocol = protocol.unwrap_or(match db {
        SplitName::Train => config::Protocol::TrainDb,
        SplitName::Test => config::Protocol::Report,
    });
    if protocol.database() != db {
        bail!(
            "--protocol {protocol} searches the {} split, but --db is {db}",
            protocol.database()
        );
    }
    if ks.is_empty() || ks.contains(&0) {
        bail!("--ks: give cut-offs k >= 1, e.g. --ks 1,5,20,100,250");
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "rankings".into());
    let method = method.unwrap_or_else(|| stem.clone());
    if method.is_empty() || method.contains([',', '\n']) {
        bail!("--method: `{method}` cannot be a metrics.csv field (no commas or newlines)");
    }
    let out = out.unwrap_or_else(|| Path::new("results").join("evaluate").join(&stem));
    let root = DataRoot::resolve(data_root, None)?;
    let data = Cifar100::load(&root, true).context("loading CIFAR-100 labels")?;
    let (_, sim) = crate::artifacts::class_similarity(&root)?;
    let rankings = Rankings::read(path)?;
    use crate::eval::Semantics as _;
    let report = score_queries(
        rankings
            .queries
            .iter()
            .zip(&rankings.lists)
            .map(|(&q, l)| (q, l.as_slice())),
        protocol,
        &data.split(db).fine,
        &data.test.fine,
        sim.values(),
        sim.n(),
        ks,
    )
    .with_context(|| format!("scoring {}", path.display()))?;
    let mut csv = String::from("method,protocol,metric,k,value\n");
    let values = metric_values(&report, None, &config::MetricName::ALL);
    for (metric, k, v) in &values {
        let k = k.map(|k| k.to_string()).unwrap_or_default();
        csv.push_str(&format!("{method},{protocol},{metric},{k},{v}\n"));
    }
    let file = out.join("metrics.csv");
    crate::store::write_bytes_atomic(&file, csv.as_bytes())?;
    println!(
        "{}: {} queries, {} ranks at most, database {db}, protocol {protocol}",
        path.display(),
        report.n_queries,
        rankings.lists.iter().map(Vec::len).max().unwrap_or(0)
    );
    println!(
        "| k | mP | mAP_report | mAHP_mean | mAHP | mP_hit20 ({} q.) | mAHP_hit20 ({} q.) |",
        report.n_hit20, report.n_sim_hit20
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let cell = |v: Option<f64>| v.map_or_else(|| "—".into(), |v| format!("{v:.6}"));
    for m in &report.at_k {
        println!(
            "| {} | {:.6} | {:.6} | {:.6} | {:.6} | {} | {} |",
            m.k,
            m.mean_precision,
            m.mean_ap_report,
            m.mean_ahp_mean,
            m.mean_ahp,
            cell(m.mean_p_hit20),
            cell(m.mean_ahp_hit20)
        );
    }
    println!("results: {}", file.display());
    Ok(())
}

/// `harness check`: exit 1 when a metric regressed against the baseline.
fn check_run(run_dir: &Path, baseline: &Path, tol: check::Tolerances) -> Result<ExitCode> {
    let run = check::read_metrics(&crate::artifacts::RunLayout::new(run_dir).metrics())?;
    let base = check::read_metrics(baseline)?;
    let cmp = check::compare(&run, &base, baseline, tol)?;
    print!("{}", cmp.table());
    let down = cmp.regressions().count();
    let up = cmp.rows.iter().filter(|r| r.jumped && !r.regressed).count();
    if down + up == 0 {
        println!(
            "no regression against {} ({} metrics compared)",
            baseline.display(),
            cmp.rows.len()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "{down} regression(s) and {up} suspicious jump(s) against {}",
            baseline.display()
        );
        Ok(ExitCode::from(1))
    }
}

/// `harness report`: re-renders the tables and figures of a run or experiment folder.
fn report(dir: &Path) -> Result<()> {
    crate::store::fault::enter("report");
    let written = experiment::render::render(dir)
        .with_context(|| format!("rendering the tables of {}", dir.display()))?;
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// `harness bench search`: one JSON record per method on stdout.
fn bench_search(a: BenchSearchArgs) -> Result<()> {
    let defaults = BenchOptions::default();
    let opts = BenchOptions {
        embeddings: a.embeddings,
        codes: a.codes,
        synthetic: a.synthetic,
        dim: a.dim,
        bits: a.bits,
        queries: a.queries,
        k: a.k,
        threads: a.threads.unwrap_or(defaults.threads),
        seed: a.seed,
        methods: a.methods,
        code_dist: a.code_dist,
        single_queries: a.single_queries,
        shortlist: a.shortlist,
        mih_m: a.mih_m,
        dump_dir: a.dump_dir,
        index: a.index,
        activations: a.activations,
        verify: !a.no_verify,
    };
    for record in search::run(&opts).context("bench search")? {
        println!("{}", serde_json::to_string(&record)?);
    }
    Ok(())
}

fn bench_model(a: &BenchModelArgs, data_root: Option<&Path>) -> Result<()> {
    use crate::bench::model::{self, Mode, Settings};
    let encoder = a.encoder;
    let default_size = if encoder == config::Encoder::CifarCnn {
        32
    } else {
        224
    };
    // Checked like a config file, so a bad size or h gets the same message.
    let text = format!(
        "name: bench\nmodel: {{encoder: {}, input_size: {}, freeze: {}, h: {}, d: {}}}\n",
        encoder.as_str(),
        a.input_size.unwrap_or(default_size),
        !a.fine_tune && encoder != config::Encoder::Alexnet,
        a.h,
        a.d
    );
    let model = Loaded::from_text("bench model options", text)?.config.model;
    let modes = &a.mode;
    if modes.contains(&Mode::Train)
        && crate::model::efficientnet::Lite::of(model.encoder).is_some()
        && model.freeze
    {
        bail!("training a frozen EfficientNet-Lite trains only the decoder; pass --fine-tune");
    }
    let pass = match (a.plain_layers, a.precision) {
        (false, precision) => crate::embed::FeaturePass::Fused(precision),
        (true, config::Precision::Fp32) => crate::embed::FeaturePass::BurnLayers,
        (true, config::Precision::Bf16) => {
            bail!("--precision bf16 is for the fused inference; burn's plain layers run in fp32")
        }
    };
    let device = a.backend.device()?;
    let backend = a.backend.as_str();
    let root = DataRoot::resolve(data_root, None)?;
    let cifar = Cifar100::load(&root, false).context("loading CIFAR-100")?;
    let c = crate::artifacts::class_embedding_f32(&root, model.d as usize)?;
    let pretrained = crate::artifacts::pretrained_weights(&root, &model);
    let settings = Settings {
        model,
        batch: a.batch.max(1),
        steps: a.steps.max(1),
        warmup: a.warmup,
        threads: a.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }),
        seed: 42,
        device,
        backend,
        pass,
    };
    let split = cifar.split(a.split);
    if let Some(path) = &a.save_features {
        let Some(lite) = crate::model::efficientnet::Lite::of(settings.model.encoder) else {
            bail!("--save-features is for --encoder efficientnet_lite0 or efficientnet_lite2");
        };
        let pretrained = pretrained
            .as_deref()
            .with_context(|| format!("{} weights", lite.name()))?;
        let encoder =
            crate::model::efficientnet::EfficientNetLite::load(pretrained, lite, &settings.device)?;
        let n = settings.batch.min(split.len());
        let features = crate::model::with_threads(settings.threads, || {
            crate::embed::encoder_features(
                &encoder,
                &split.pixels[..n * IMAGE_BYTES],
                settings.model.input_size as usize,
                settings.batch,
                false,
                settings.pass,
            )
        })?;
        crate::store::write_atomic(path, |w| {
            crate::store::npy::write_f32(w, n, features.len() / n.max(1), &features)
        })
        .with_context(|| format!("writing {}", path.display()))?;
    }
    for &mode in modes {
        let record = model::measure(
            &settings,
            mode,
            &split.pixels,
            &split.fine,
            &c,
            pretrained.as_deref(),
        )?;
        println!("{}", serde_json::to_string(&record)?);
    }
    Ok(())
}

/// `harness bench peak`: one JSON record per rate on stdout.
fn bench_peak(a: &args::BenchPeakArgs) -> Result<()> {
    use crate::bench::peak;
    let threads = a.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let records = crate::model::with_threads(threads, || {
        let mut counts = vec![1, threads];
        counts.dedup();
        let mut records: Vec<_> = counts
            .into_iter()
            .flat_map(|t| peak::instruction_peaks(t, a.iterations, a.repeats))
            .collect();
        records.extend(peak::matmul_rates(a.n, threads, a.repeats));
        records
    });
    for record in records {
        println!("{}", serde_json::to_string(&record)?);
    }
    Ok(())
}

/// `harness bench iwan`: one JSON record per (topIWK, topWWK) on stdout.
fn bench_iwan(a: args::BenchIwanArgs, data_root: Option<&Path>) -> Result<()> {
    let opts = crate::bench::iwan::IwanOptions {
        run_dir: a.run_dir,
        db: a.db.into(),
        queries: a.queries,
        k: a.k,
        top_iwk: a.top_iwk,
        top_wwk: a.top_wwk,
    };
    let records = crate::bench::iwan::run(&opts, data_root)
        .with_context(|| format!("bench iwan on {}", opts.run_dir.display()))?;
    for record in records {
        println!("{}", serde_json::to_string(&record)?);
    }
    Ok(())
}

/// `harness bench scale`: the table, `scale.json` and the figure in the output folder.
fn bench_scale(a: args::BenchScaleArgs, data_root: Option<&Path>) -> Result<()> {
    let opts = crate::bench::scale::ScaleOptions {
        run: a.run,
        sizes: a.sizes,
        methods: a.methods,
        k: a.k,
        queries: a.queries,
        single_queries: a.single_queries,
        threads: a.threads,
        shortlist: a.shortlist,
        seed: a.seed,
        out: a.out,
        keep_data: a.keep_data,
        faiss_python: a.faiss_python,
        faiss_script: a.faiss_script,
        replot: a.replot,
    };
    let out = crate::bench::scale::run(&opts, data_root)
        .with_context(|| format!("bench scale on {}", opts.run.display()))?;
    println!("results: {}", out.display());
    Ok(())
}

fn serve(run_dir: &Path, addr: std::net::SocketAddr, data_root: Option<&Path>) -> Result<()> {
    // A run folder gets its query page; any other folder, the page of the runs under it.
    let (router, what) = if crate::artifacts::RunLayout::new(run_dir).is_run() {
        let served = crate::serve::Served::load(run_dir, data_root)
            .with_context(|| format!("loading the run in {}", run_dir.display()))?;
        (crate::serve::router(served), "the run")
    } else {
        let results = crate::serve::Results::scan(run_dir, data_root)
            .with_context(|| format!("listing the runs under {}", run_dir.display()))?;
        eprintln!(
            "{} runs found; each loads on its first request",
            results.len()
        );
        (crate::serve::results_router(results), "the runs under")
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let listener =
            crate::serve::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        if !local.ip().is_loopback() {
            eprintln!("warning: listening on {local}, reachable beyond this machine");
        }
        println!(
            "serving {what} {} at http://{local}/ (Ctrl-C stops)",
            run_dir.display()
        );
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        crate::serve::serve(listener, router, shutdown)
            .await
            .context("serving")
    })?;
    println!("stopped");
    Ok(())
}

fn load_config(path: Option<&Path>) -> Result<Loaded> {
    Ok(match path {
        Some(p) => Loaded::from_path(p)?,
        None => Loaded::embedded_default()?,
    })
}

/// Positional arguments of `run` and `validate`: config files, and `KEY=VALUE` overrides (an
/// argument with `=` that is not an existing file).
fn split_args(args: &[String]) -> Result<(Vec<PathBuf>, Vec<config::Override>)> {
    let mut configs = Vec::new();
    let mut overrides = Vec::new();
    for a in args {
        if a.contains('=') && !Path::new(a).is_file() {
            overrides.push(a.parse().map_err(anyhow::Error::msg)?);
        } else {
            configs.push(PathBuf::from(a));
        }
    }
    Ok((configs, overrides))
}

/// `loaded` with the command line's overrides and sweep applied.
fn with_command_line(
    loaded: Loaded,
    overrides: &[config::Override],
    sweep: &args::SweepArgs,
) -> Result<Loaded> {
    Ok(loaded.with_command_line(overrides, &sweep.params, sweep.sweep_mode.map(Into::into))?)
}

fn validate(args: &[String], sweep: &args::SweepArgs, brief: bool) -> Result<ExitCode> {
    let (paths, overrides) = split_args(args)?;
    if paths.is_empty() {
        bail!("name at least one config file (the KEY=VALUE overrides apply to each)");
    }
    let mut failed = 0;
    for path in &paths {
        let loaded = Loaded::from_path(path).and_then(|l| {
            l.with_command_line(&overrides, &sweep.params, sweep.sweep_mode.map(Into::into))
        });
        match loaded.and_then(|l| l.runs().map(|r| (l, r))) {
            Ok((loaded, runs)) => {
                println!(
                    "ok: {} ({} run{})",
                    path.display(),
                    runs.len(),
                    if runs.len() == 1 { "" } else { "s" }
                );
                if brief {
                    continue;
                }
                let mut base = loaded.config.clone();
                base.sweep = None;
                println!(
                    "# resolved config (defaults filled in){}",
                    if runs.len() > 1 {
                        ", before sweep values"
                    } else {
                        ""
                    }
                );
                if !loaded.command_line.is_empty() {
                    println!("# command line: {}", loaded.command_line.join(" "));
                }
                print!("{}", config::to_yaml(&base));
                if let Some(sweep) = &loaded.config.sweep {
                    println!(
                        "# sweep ({:?}) over {}:",
                        sweep.mode,
                        sweep.params.keys().cloned().collect::<Vec<_>>().join(", ")
                    );
                }
                for run in &runs {
                    let overrides: Vec<String> = run
                        .overrides
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    println!(
                        "# run {:>3}  {}  config {}  {}",
                        run.index,
                        run.id,
                        &run.hash[..12],
                        overrides.join(" ")
                    );
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("invalid: {e}");
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn data_info(root: Option<&Path>) -> Result<()> {
    let root = DataRoot::resolve(root, None)?;
    println!("data root: {} ({})", root.path.display(), root.chosen_by);
    let cifar = Cifar100::load(&root, false).context("loading CIFAR-100")?;
    let hierarchy = Hierarchy::load(&root.hierarchy_dir(), &cifar.names.fine)
        .context("loading the class hierarchy")?;
    let usf = UsfNorms::load(&root.usf_file()).context("loading the USF norms")?;
    let s = DataSummary::compute(&cifar, [usize::MAX; 2], &hierarchy, &usf);
    println!("\nCIFAR-100 ({})", root.cifar_dir().display());
    println!(
        "{:<6} {:>8} {:>14} {:>16} {:>12}  sha256",
        "split", "records", "per fine class", "per coarse class", "first f/c"
    );
    for sp in &s.splits {
        println!(
            "{:<6} {:>8} {:>14} {:>16} {:>12}  {} ({})",
            sp.split.as_str(),
            sp.records,
            format!("{}..{}", sp.fine_min, sp.fine_max),
            format!("{}..{}", sp.coarse_min, sp.coarse_max),
            format!("{}/{}", sp.first_record.0, sp.first_record.1),
            &sp.sha256[..16],
            if sp.sha256_matches {
                "matches the known value"
            } else {
                "DIFFERS from the known value"
            }
        );
    }
    for split in SplitName::ALL {
        let expected = split.per_class();
        let counts = cifar.split(split).fine_counts();
        if counts.iter().any(|&c| c != expected) {
            println!("note: {split} is not balanced ({expected} per class expected)");
        }
    }
    println!("\ncoarse classes (id: name -> fine ids: names)");
    let n = &cifar.names;
    for (c, coarse) in n.coarse.iter().enumerate() {
        let fines: Vec<String> = (0..n.fine.len())
            .filter(|&f| n.fine_to_coarse[f] as usize == c)
            .map(|f| format!("{f}:{}", n.fine[f]))
            .collect();
        println!("{c:>3}: {coarse:<32} {}", fines.join(" "));
    }
    println!(
        "\nhierarchy: {} nodes, root {} ({}), height {}, {} leaves",
        s.hierarchy_nodes,
        s.hierarchy_root,
        hierarchy.name(s.hierarchy_root),
        s.hierarchy_height,
        hierarchy.n_leaves()
    );
    println!(
        "USF norms: {} rows, {} cues, {} targets, {} distinct words, {} rows with FSG",
        s.usf_rows, s.usf_cues, s.usf_targets, s.usf_words, s.usf_rows_with_fsg
    );
    // How many class labels IWAN can anchor: those that map to at least one USF word by the
    // normalisation rule of iwan::words.
    let vocab = crate::iwan::words::Vocabulary::from_norms(&usf);
    let cover =
        |labels: &[String]| crate::iwan::words::coverage(&vocab, labels.iter().map(String::as_str));
    let (cf, tf) = cover(&cifar.names.fine);
    let (cc, tc) = cover(&cifar.names.coarse);
    let imagenet = match crate::data::imagenet::load_names(&root) {
        Ok(names) => {
            let (ci, ti) = cover(&names);
            format!("ImageNet labels {ci} of {ti}")
        }
        Err(e) => format!("ImageNet labels not read ({e})"),
    };
    println!(
        "USF coverage (labels mapping to at least one USF word): {imagenet}, CIFAR-100 fine names {cf} of {tf}, coarse names {cc} of {tc}"
    );
    Ok(())
}

fn data_fetch(args: &FetchArgs, data_root: Option<&Path>, progress: bool) -> Result<()> {
    let root = args
        .root
        .as_deref()
        .or(data_root)
        .context("say where to install: --root DIR (or --data-root DIR)")?;
    let sources: Vec<&fetch::Source> = if args.all {
        fetch::CATALOGUE.iter().collect()
    } else if args.only.is_empty() {
        vec![fetch::source("cifar").expect("cifar is in the catalogue")]
    } else {
        args.only
            .iter()
            .map(|name| {
                fetch::source(name.trim()).with_context(|| {
                    format!(
                        "--only: unknown source `{name}`; the sources are {}",
                        fetch::source_names().join(", ")
                    )
                })
            })
            .collect::<Result<_>>()?
    };
    let opts = fetch::Options {
        root,
        from: args.from.as_deref(),
        mirror: args.mirror.as_deref(),
        archive: args.archive.as_deref(),
        archive_md5: args.md5.as_deref(),
    };
    std::fs::create_dir_all(root)
        .with_context(|| format!("creating the data root {}", root.display()))?;
    let mut reporter = FetchReporter::new(progress);
    let started = std::time::Instant::now();
    for source in sources {
        let outcome = fetch::fetch(source, &opts, &mut reporter)
            .with_context(|| format!("fetching {} ({})", source.name, source.what))?;
        let files = match source.installs.len() {
            1 => "1 file".to_string(),
            n => format!("{n} files"),
        };
        match outcome {
            fetch::Outcome::UpToDate => {
                println!("{}: up to date ({files} verified)", source.name)
            }
            fetch::Outcome::Installed {
                downloaded,
                seconds,
            } => println!(
                "{}: installed {files}, each verified, in {seconds:.2} s ({} downloaded)",
                source.name,
                indicatif::HumanBytes(downloaded)
            ),
        }
    }
    println!(
        "data root {} ready in {:.1} s; use it with --data-root {0} or {}={0}",
        root.display(),
        started.elapsed().as_secs_f64(),
        crate::data::DATA_ENV
    );
    Ok(())
}

/// Prints each source URL and draws a byte progress bar for each download.
struct FetchReporter {
    bar: indicatif::ProgressBar,
    progress: bool,
}

impl FetchReporter {
    fn new(progress: bool) -> Self {
        Self {
            bar: indicatif::ProgressBar::hidden(),
            progress,
        }
    }
}

impl fetch::Reporter for FetchReporter {
    fn get(&mut self, url: &str) {
        println!("GET {url}");
        self.bar = indicatif::ProgressBar::hidden();
        if self.progress {
            self.bar
                .set_draw_target(indicatif::ProgressDrawTarget::stderr());
            self.bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "  [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
        }
    }
    fn local(&mut self, path: &Path) {
        println!("local {}", path.display());
    }
    fn bytes(&mut self, done: u64, total: Option<u64>) {
        if let Some(t) = total {
            self.bar.set_length(t);
        }
        self.bar.set_position(done);
    }
    fn resuming(&mut self, done: u64, why: &str) {
        self.bar
            .suspend(|| eprintln!("  connection broke ({why}); resuming at byte {done}"));
    }
    fn differs(&mut self, path: &Path, why: &str) {
        eprintln!("{}: {why}; replacing it", path.display());
    }
    fn downloaded(&mut self, file: &str, bytes: u64, seconds: f64) {
        self.bar.finish_and_clear();
        println!(
            "  {file}: {} in {seconds:.3} s",
            indicatif::HumanBytes(bytes)
        );
    }
}
