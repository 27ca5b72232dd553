//! The files a generated crate and its test firmware are made of: the runtime's sources,
//! vendored byte for byte, and the minijinja templates (embedded at build time, so no checkout
//! is needed at run time).

/// ceg4n-runtime's source, vendored into every generated crate.
pub const RUNTIME_SOURCE: &str = include_str!("../../../runtime-nostd/src/lib.rs");

/// ceg4n-runtime's source files (path under `src/`, text), vendored byte for byte.
pub const RUNTIME_FILES: &[(&str, &str)] = &[
    ("lib.rs", RUNTIME_SOURCE),
    (
        "paired.rs",
        include_str!("../../../runtime-nostd/src/paired.rs"),
    ),
    (
        "arm_dsp.rs",
        include_str!("../../../runtime-nostd/src/arm_dsp.rs"),
    ),
];

pub(super) const FIRMWARE_TEMPLATES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../../templates/firmware/Cargo.toml.j2"),
    ),
    (
        "memory.x",
        include_str!("../../../templates/firmware/memory.x.j2"),
    ),
    (
        "build.rs",
        include_str!("../../../templates/firmware/build.rs.j2"),
    ),
    (
        ".cargo/config.toml",
        include_str!("../../../templates/firmware/.cargo/config.toml.j2"),
    ),
    (
        "src/main.rs",
        include_str!("../../../templates/firmware/src/main.rs.j2"),
    ),
];

pub(super) const TEMPLATES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../../templates/crate/Cargo.toml.j2"),
    ),
    (
        "src/lib.rs",
        include_str!("../../../templates/crate/src/lib.rs.j2"),
    ),
    (
        "tests/vectors.rs",
        include_str!("../../../templates/crate/tests/vectors.rs.j2"),
    ),
    (
        "README.md",
        include_str!("../../../templates/crate/README.md.j2"),
    ),
    (
        "runtime/Cargo.toml",
        include_str!("../../../templates/crate/runtime/Cargo.toml.j2"),
    ),
    (
        "tests/data/vectors.rs",
        include_str!("../../../templates/crate/tests/data/vectors.rs.j2"),
    ),
    (
        "examples/classify.rs",
        include_str!("../../../templates/crate/examples/classify.rs.j2"),
    ),
    (
        ".cargo/config.toml",
        include_str!("../../../templates/crate/.cargo/config.toml.j2"),
    ),
    (
        "build.rs",
        include_str!("../../../templates/crate/build.rs.j2"),
    ),
    // The board's memory map, the same file the test firmware links with.
    (
        "memory.x",
        include_str!("../../../templates/firmware/memory.x.j2"),
    ),
];

/// The firmware item that puts `block` in flash (the section the board's memory.x places), or
/// nothing. The example and the test firmware both carry it.
pub(super) fn boot_block_item(block: Option<crate::board::BootBlock>) -> &'static str {
    use crate::board::BootBlock;
    match block {
        None => "",
        Some(BootBlock::Rp2040Boot2) => {
            "/// The RP2040 boot ROM's second stage (the Pico's W25Q080 flash), at the start of
/// flash.
#[link_section = \".boot2\"]
#[used]
static BOOT2: [u8; 256] = rp2040_boot2::BOOT_LOADER_W25Q080;
"
        }
        Some(BootBlock::Rp2350ImageDef) => {
            "/// The RP2350 boot ROM's minimal IMAGE_DEF block (datasheet 5.9.5.1: a secure Arm
/// executable), in the first 4 KiB of flash.
#[link_section = \".start_block\"]
#[used]
static IMAGE_DEF: [u32; 5] = [0xffff_ded3, 0x1021_0142, 0x0000_01ff, 0x0000_0000, 0xab12_3579];
"
        }
    }
}

/// The dependencies the board's firmware needs beyond cortex-m-rt and semihosting, as TOML
/// lines: RTT output on real boards, the RP2040's second stage. The example's
/// dev-dependencies and the test firmware's dependencies both carry them.
pub(super) fn board_dependencies(board: &crate::board::Board) -> String {
    let mut lines = String::new();
    if board.qemu_machine.is_none() {
        lines.push_str(
            "# Output over RTT (read through the debug probe).\n\
             rtt-target = \"0.6\"\n\
             # rtt-target's critical section.\n\
             cortex-m = { version = \"0.7\", features = [\"critical-section-single-core\"] }\n",
        );
    }
    if board.boot_block == Some(crate::board::BootBlock::Rp2040Boot2) {
        lines.push_str(
            "# The boot ROM's second stage (memory.x puts it at the start of flash).\n\
             rp2040-boot2 = \"0.3\"\n",
        );
    }
    lines
}
