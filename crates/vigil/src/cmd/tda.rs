//! `vigil tda FILE`: Vietoris–Rips persistence barcodes of a file, with Ripser's formats and output.
//!
//! Thin clap wiring: parsing, computation and rendering live in `vigil_topo` (and are tested there).

use std::path::PathBuf;

use anyhow::Context;
use vigil_topo::{RipsParams, io};

/// Input formats (Ripser's names).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TdaFormat {
    /// One point per line, coordinates separated by whitespace or commas.
    PointCloud,
    /// Strict lower triangle of a distance matrix, row by row.
    LowerDistance,
    /// Full distance matrix, one row per line.
    Distance,
}

impl From<TdaFormat> for io::Format {
    fn from(f: TdaFormat) -> Self {
        match f {
            TdaFormat::PointCloud => io::Format::PointCloud,
            TdaFormat::LowerDistance => io::Format::LowerDistance,
            TdaFormat::Distance => io::Format::Distance,
        }
    }
}

/// Compute persistence barcodes (Vietoris–Rips) of a point cloud or distance matrix.
#[derive(clap::Args, Debug)]
pub struct TdaArgs {
    /// Input file.
    pub file: PathBuf,
    /// Input format.
    #[arg(long, value_enum, default_value = "lower-distance")]
    pub format: TdaFormat,
    /// Highest homology dimension.
    #[arg(long, default_value_t = 1)]
    pub dim: usize,
    /// Only simplices of diameter at most this value (default: the enclosing radius).
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Prime modulus p of the coefficients Z/p.
    #[arg(long, default_value_t = 2)]
    pub modulus: u32,
    /// Print `{"dgms": [[[birth, death|null], …], …]}` instead of Ripser's text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `vigil tda`.
pub fn run(args: TdaArgs) -> anyhow::Result<()> {
    let name = args.file.display();
    let text =
        std::fs::read_to_string(&args.file).with_context(|| format!("cannot read {name}"))?;
    let dm =
        io::parse(&text, args.format.into()).with_context(|| format!("{name}: invalid input"))?;
    let params = RipsParams {
        max_dim: args.dim,
        threshold: args.threshold,
        modulus: args.modulus,
    };
    let barcodes = vigil_topo::rips(&dm, &params)
        .with_context(|| format!("{name}: cannot compute barcodes"))?;
    if args.json {
        println!("{}", io::render_json(&barcodes));
    } else {
        print!("{}", io::render_plain(&barcodes));
    }
    Ok(())
}
