fn main() {
    // Set by scripts/test.sh's compile check of the mobile code on Linux (docs/mobile.md).
    println!("cargo::rustc-check-cfg=cfg(airtext_mobile_check)");
    tauri_build::build()
}
