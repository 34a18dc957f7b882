//! `hookflow sign`: the signature header(s) a sender adds to a body.

use std::path::PathBuf;

use anyhow::Context as _;
use std::process::ExitCode;

use hookflow_protocol::signature;

use super::{environment, print_out, read_input};

#[derive(clap::Args)]
pub(crate) struct SignArgs {
    /// Signature preset.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(signature::PRESETS), required_unless_present = "header")]
    preset: Option<String>,
    /// Custom scheme: the header to write (instead of --preset).
    #[arg(long, conflicts_with = "preset")]
    header: Option<String>,
    /// Custom scheme: HMAC hash.
    #[arg(long, value_enum, default_value_t = AlgorithmArg::Sha256, requires = "header")]
    algorithm: AlgorithmArg,
    /// Custom scheme: how the MAC is written.
    #[arg(long, value_enum, default_value_t = EncodingArg::Hex, requires = "header")]
    encoding: EncodingArg,
    /// Custom scheme: text before the MAC (e.g. "sha256=").
    #[arg(long, default_value = "", requires = "header")]
    prefix: String,
    /// Environment variable holding the secret (never pass secrets as arguments).
    #[arg(long)]
    secret_env: String,
    /// Unix timestamp for timestamped schemes (default: now).
    #[arg(long)]
    timestamp: Option<i64>,
    /// Message id for standard-webhooks (default: random).
    #[arg(long)]
    id: Option<String>,
    /// How to print the headers: `headers` (one `Name: value` per line) or `curl` (a curl config
    /// on stdin: `hookflow sign … --format curl FILE | curl -K - --data-binary @FILE URL`).
    #[arg(long, value_enum, default_value_t = SignFormat::Headers)]
    format: SignFormat,
    /// The body file, or - for stdin.
    #[arg(default_value = "-")]
    file: PathBuf,
}

/// `--format` of `hookflow sign`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum SignFormat {
    Headers,
    Curl,
}

/// `--algorithm` of `hookflow sign`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum AlgorithmArg {
    Sha1,
    Sha256,
    Sha512,
}

impl From<AlgorithmArg> for signature::Algorithm {
    fn from(a: AlgorithmArg) -> Self {
        match a {
            AlgorithmArg::Sha1 => signature::Algorithm::Sha1,
            AlgorithmArg::Sha256 => signature::Algorithm::Sha256,
            AlgorithmArg::Sha512 => signature::Algorithm::Sha512,
        }
    }
}

/// `--encoding` of `hookflow sign`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum EncodingArg {
    Hex,
    Base64,
}

impl From<EncodingArg> for signature::Encoding {
    fn from(e: EncodingArg) -> Self {
        match e {
            EncodingArg::Hex => signature::Encoding::Hex,
            EncodingArg::Base64 => signature::Encoding::Base64,
        }
    }
}

pub(crate) fn sign(args: SignArgs) -> anyhow::Result<ExitCode> {
    use signature::{Custom, Scheme};
    let scheme = match (&args.preset, &args.header) {
        (Some(p), _) => Scheme::preset(p).with_context(|| format!("unknown preset {p}"))?,
        (None, Some(h)) => Scheme::Custom(Custom {
            header: h.clone(),
            algorithm: args.algorithm.into(),
            encoding: args.encoding.into(),
            prefix: args.prefix.clone(),
        }),
        (None, None) => anyhow::bail!("pass --preset or --header"),
    };
    let env = environment()?;
    let secret = env.var(&args.secret_env).with_context(|| {
        format!(
            "--secret-env names {}, which is not set or empty",
            args.secret_env
        )
    })?;
    let body = read_input(&args.file.to_string_lossy())?;
    let timestamp = args.timestamp.unwrap_or_else(|| env.now());
    let id = args.id.clone().unwrap_or_else(|| {
        format!(
            "msg_{}",
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
        )
    });
    let headers = signature::sign(&scheme, &body, secret.as_bytes(), timestamp, &id)?;
    let text: String = match args.format {
        SignFormat::Headers => headers.iter().map(|(k, v)| format!("{k}: {v}\n")).collect(),
        // curl's config syntax: one `header = "…"` per header, every one sent (a shell's
        // `-H "$(…)"` would take only one line).
        SignFormat::Curl => headers
            .iter()
            .map(|(k, v)| {
                format!(
                    "header = \"{k}: {}\"\n",
                    v.replace('\\', "\\\\").replace('"', "\\\"")
                )
            })
            .collect(),
    };
    print_out(&text)?;
    Ok(ExitCode::SUCCESS)
}
