//! Whether the window renders with GL (Linux, WebKitGTK 2.50, GTK 3).
//!
//! On a machine without a GPU driver (a VM, a container, a remote X session, Xvfb) every GL
//! context GTK and WebKitGTK make is Mesa's llvmpipe: software rendering through an LLVM JIT,
//! which maps `libLLVM` (44 MB resident here) and Mesa's driver into the app process, for no
//! gain over WebKit's own painting of a page like ours (docs/benchmarks.md, "The app").
//! Three independent paths load Mesa into the app process, each found with gdb under Xvfb:
//!
//! 1. GTK itself, at display open: `gdk_display_manager_open_display` → GDK's X11 visual
//!    set-up → `epoxy_glx_version` → `glXQueryServerString` → `libGLX_mesa` → `swrast_dri.so`
//!    → `libLLVM-15`. Only `GDK_GL=disable` stops it.
//! 2. WebKit's probe for its DMA-BUF renderer (`eglInitialize` on the UI process's display),
//!    when the web view is made, or with compositing off on the first load.
//!    `WEBKIT_DISABLE_DMABUF_RENDERER=1` skips it.
//! 3. WebKit's lookup of the GPU render node it hands the web process, on the first load
//!    (`drmRenderNodeDevice()`: `eglInitialize`, then `EGL_EXT_device_query`). It runs even
//!    with acceleration off; only `WEBKIT_WEB_RENDER_DEVICE_FILE` short-cuts it. Without a GPU
//!    the lookup finds no node, so we name one that matches no device: the web process then
//!    has no DRM device, exactly as it would have after the lookup.
//!
//! Plus `WEBKIT_DISABLE_COMPOSITING_MODE=1`, WebKit's switch for its
//! `hardware-acceleration-policy` = never, set as a variable so it holds from the first frame
//! of every web view. (The policy set through `WebKitSettings` after the view exists is not
//! enough: path 2 has run by then.) The web process still loads Mesa: WebKit 2.50 makes an
//! EGL display there unconditionally (without any EGL vendor it exits).
//!
//! `AIRTEXT_GPU` overrides the guess: `on` (WebKit's and GTK's defaults: GL where they can),
//! `off` (no GL in the app process), `auto` or unset (`off` when the machine has no GPU).

use std::path::Path;

/// The user's choice, from `AIRTEXT_GPU`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuMode {
    On,
    Off,
    Auto,
}

impl GpuMode {
    /// Parses `AIRTEXT_GPU`; `None` for a value it does not know (the caller says so and
    /// falls back to `auto`, rather than refusing to start over a typo).
    pub fn parse(value: &str) -> Option<GpuMode> {
        match value.trim().to_ascii_lowercase().as_str() {
            "on" | "1" | "true" | "yes" => Some(GpuMode::On),
            "off" | "0" | "false" | "no" => Some(GpuMode::Off),
            "auto" | "" => Some(GpuMode::Auto),
            _ => None,
        }
    }
}

/// Whether the machine has a GPU a GL driver can use: a DRM render node (`/dev/dri/renderD*`,
/// what Mesa's hardware drivers and NVIDIA's nvidia-drm open), or NVIDIA's own device
/// (`/dev/nvidiactl`, its GLX driver without nvidia-drm). Without either, GL is llvmpipe.
pub fn has_gpu(dev: &Path) -> bool {
    let render_node = std::fs::read_dir(dev.join("dri")).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("renderD"))
    });
    render_node || dev.join("nvidiactl").exists()
}

/// Whether the window should render without GL under `mode` on a machine with (`gpu`) or
/// without a GPU.
pub fn software_only(mode: GpuMode, gpu: bool) -> bool {
    match mode {
        GpuMode::On => false,
        GpuMode::Off => true,
        GpuMode::Auto => !gpu,
    }
}

/// Decides from `AIRTEXT_GPU` and `/dev`, and when the window is to render without GL, sets
/// what GTK and WebKit read once at start-up. Must run before GTK starts (before the Tauri
/// builder runs), while the process has one thread (`set_var`).
pub fn prepare() {
    let raw = std::env::var("AIRTEXT_GPU").unwrap_or_default();
    let mode = GpuMode::parse(&raw).unwrap_or_else(|| {
        tracing::warn!(value = %raw, "AIRTEXT_GPU is on, off or auto; using auto");
        GpuMode::Auto
    });
    let gpu = has_gpu(Path::new("/dev"));
    let software = software_only(mode, gpu);
    tracing::info!(?mode, gpu, software, "rendering");
    if software {
        for (name, value) in STARTUP_ENV {
            // A variable the user set wins: it is their explicit choice.
            if std::env::var_os(name).is_none() {
                std::env::set_var(name, value);
            }
        }
    }
}

/// What GTK and WebKitGTK read once per process (see the module's documentation), set when
/// rendering without GL.
const STARTUP_ENV: &[(&str, &str)] = &[
    ("GDK_GL", "disable"),
    ("WEBKIT_DISABLE_COMPOSITING_MODE", "1"),
    ("WEBKIT_DISABLE_DMABUF_RENDERER", "1"),
    // A path no DRM device has (WebKit compares it with the devices' node names).
    ("WEBKIT_WEB_RENDER_DEVICE_FILE", "/dev/dri/none"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_values_and_refuses_others() {
        assert_eq!(GpuMode::parse("on"), Some(GpuMode::On));
        assert_eq!(GpuMode::parse(" OFF "), Some(GpuMode::Off));
        assert_eq!(GpuMode::parse("auto"), Some(GpuMode::Auto));
        assert_eq!(GpuMode::parse(""), Some(GpuMode::Auto));
        assert_eq!(GpuMode::parse("0"), Some(GpuMode::Off));
        assert_eq!(GpuMode::parse("fast"), None);
    }

    #[test]
    fn auto_follows_the_machine_and_the_override_wins() {
        assert!(software_only(GpuMode::Auto, false));
        assert!(!software_only(GpuMode::Auto, true));
        assert!(!software_only(GpuMode::On, false));
        assert!(software_only(GpuMode::Off, true));
    }

    #[test]
    fn a_render_node_or_nvidia_device_is_a_gpu() -> std::io::Result<()> {
        let dev = tempfile::tempdir()?;
        assert!(!has_gpu(dev.path()));
        std::fs::create_dir(dev.path().join("dri"))?;
        std::fs::write(dev.path().join("dri/card0"), b"")?;
        // A card node alone (a KMS display without a render driver) is no GPU for GL.
        assert!(!has_gpu(dev.path()));
        std::fs::write(dev.path().join("dri/renderD128"), b"")?;
        assert!(has_gpu(dev.path()));
        let nvidia = tempfile::tempdir()?;
        std::fs::write(nvidia.path().join("nvidiactl"), b"")?;
        assert!(has_gpu(nvidia.path()));
        Ok(())
    }
}
