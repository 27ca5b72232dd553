//! Board data files (`boards/*.toml`): one file per board, so adding a board is adding a file.

use std::path::Path;

use crate::error::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// One board.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Board {
    /// Name used on the command line (the file stem).
    pub name: String,
    /// One line for people.
    pub description: String,
    /// Core, e.g. `cortex-m4f`.
    pub core: String,
    /// Rust target triple.
    pub target: String,
    /// Flash origin address.
    pub flash_origin: u64,
    /// Flash length in bytes.
    pub flash_length: u64,
    /// RAM origin address.
    pub ram_origin: u64,
    /// RAM length in bytes.
    pub ram_length: u64,
    /// QEMU machine (`-M`), if QEMU emulates the board.
    pub qemu_machine: Option<String>,
    /// QEMU cpu (`-cpu`), if emulated.
    pub qemu_cpu: Option<String>,
    /// probe-rs chip name, if the board is flashed with probe-rs.
    pub probe_rs_chip: Option<String>,
    /// What the chip's boot ROM needs in flash before it runs an image, if anything.
    #[serde(default)]
    pub boot_block: Option<BootBlock>,
}

/// What a chip's boot ROM needs in flash before it runs an image (most Cortex-M chips: nothing,
/// they start at the vector table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootBlock {
    /// RP2040: a 256-byte second-stage boot loader at the start of flash, which sets up the
    /// external flash (`rp2040-boot2`'s, for the W25Q080 of the Raspberry Pi Pico).
    Rp2040Boot2,
    /// RP2350: an IMAGE_DEF block within the first 4 KiB of flash (the datasheet's minimal one:
    /// a secure Arm executable).
    Rp2350ImageDef,
}

/// The targets boards may name (those `rust-toolchain.toml` installs).
pub const SUPPORTED_TARGETS: &[&str] = &[
    "thumbv6m-none-eabi",
    "thumbv7m-none-eabi",
    "thumbv7em-none-eabihf",
    "thumbv8m.main-none-eabihf",
];

/// The board files bundled into the binary at build time (the repository's `boards/`).
static BUNDLED: include_dir::Dir = include_dir::include_dir!("$CARGO_MANIFEST_DIR/../boards");

impl Board {
    /// Whether the core has the Armv7E-M DSP extension (two 16-bit multiply-accumulates per
    /// instruction, `SMLAD`): every `thumbv7em` core (Cortex-M4, M7). The generator lays out
    /// weights for the paired kernels there.
    pub fn has_dsp(&self) -> bool {
        self.target.starts_with("thumbv7em")
    }

    /// Parses and checks one board file's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Board> {
        let board: Board = toml::from_str(text).map_err(|e| {
            crate::error::input_error!(
                "{origin}: not a board file ({}); see boards/README.md for the fields",
                e.message()
            )
        })?;
        if !SUPPORTED_TARGETS.contains(&board.target.as_str()) {
            bail!(
                "{origin}: target {} is not supported; supported: {}",
                board.target,
                SUPPORTED_TARGETS.join(", ")
            );
        }
        Ok(board)
    }

    /// Reads and checks one board file.
    pub fn load(path: &Path) -> Result<Board> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read the board file", path.display()))?;
        Board::parse(&text, &path.display().to_string())
    }

    /// The bundled boards, then those of `extra` (a folder of board files; a board there
    /// replaces a bundled one of the same name), sorted by name.
    pub fn all(extra: Option<&Path>) -> Result<Vec<Board>> {
        let mut boards = Vec::new();
        for file in BUNDLED.files() {
            if file.path().extension().is_some_and(|e| e == "toml") {
                let text = file
                    .contents_utf8()
                    .context("a bundled board file is not UTF-8")?;
                boards.push(Board::parse(
                    text,
                    &format!("boards/{}", file.path().display()),
                )?);
            }
        }
        if let Some(dir) = extra {
            let entries = std::fs::read_dir(dir)
                .with_context(|| format!("{}: cannot read the board directory", dir.display()))?;
            for entry in entries.filter_map(|e| e.ok()) {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "toml") {
                    let board = Board::load(&path)?;
                    boards.retain(|b| b.name != board.name);
                    boards.push(board);
                }
            }
        }
        boards.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(boards)
    }

    /// The board called `name` (bundled, or in `extra`).
    pub fn find(extra: Option<&Path>, name: &str) -> Result<Board> {
        let boards = Board::all(extra)?;
        match boards.iter().find(|b| b.name == name) {
            Some(b) => Ok(b.clone()),
            None => bail!(
                "unknown board {name}; known boards: {} (add one with --board-dir DIR holding DIR/{name}.toml)",
                boards
                    .iter()
                    .map(|b| b.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        }
    }
}
