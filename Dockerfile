# syntax=docker/dockerfile:1
#
# blocker in a container. Build: `docker build -t blocker .` (or `docker compose build`).
# Run it with the host's network, the host's /sys/fs/bpf and CAP_BPF, CAP_NET_ADMIN and
# CAP_PERFMON only: see docker-compose.yml and the README's Container section.

# ---- Build ---------------------------------------------------------------------------------
# What `cargo xtask build` installs (xtask/src/setup.rs, after shared/TOOLCHAIN.md sections 1
# and 2): a nightly with rust-src to build the eBPF program's `core`, and bpf-linker linked
# against that nightly's own libLLVM.
FROM rust:1-bookworm AS builder

# The nightly blocker is developed with (LLVM 22). blocker/build.rs (aya-build) runs
# `rustup run nightly ...`, so whatever is installed here must answer to the name "nightly":
# a dated toolchain gets that name through a symlink. RUST_NIGHTLY=nightly takes the latest
# instead; bpf-linker 0.13 supports LLVM 21 to 23.
ARG RUST_NIGHTLY=nightly-2026-05-19
ARG BPF_LINKER_VERSION=0.13.0

# 1. The nightly, with rust-src.
RUN set -eu; \
    rustup toolchain install "$RUST_NIGHTLY" --profile minimal --component rust-src; \
    host="$(rustc -vV | sed -n 's/^host: //p')"; \
    if [ "$RUST_NIGHTLY" != nightly ]; then \
        ln -sfn "$RUST_NIGHTLY-$host" "$RUSTUP_HOME/toolchains/nightly-$host"; \
    fi; \
    rustup run nightly rustc -vV

# 2. bpf-linker against the nightly's libLLVM: no LLVM development package of that version
# exists in Debian. bpf-linker links `$LLVM_PREFIX/lib/libLLVM.so` and keeps an rpath to that
# folder, where the library's soname must resolve too.
RUN set -eu; \
    lib="$(rustc +nightly --print sysroot)/lib"; \
    libllvm="$(ls -1 "$lib"/libLLVM.so* 2>/dev/null | head -n 1)"; \
    [ -f "$libllvm" ] || { echo "no libLLVM.so in $lib" >&2; exit 1; }; \
    major="$(rustc +nightly -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')"; \
    prefix="$HOME/.local/rustc-llvm"; \
    mkdir -p "$prefix/lib"; \
    ln -sf "$libllvm" "$prefix/lib/libLLVM.so"; \
    ln -sf "$libllvm" "$prefix/lib/$(basename "$libllvm")"; \
    LLVM_PREFIX="$prefix" cargo install --locked bpf-linker --version "$BPF_LINKER_VERSION" \
        --no-default-features --features "llvm-$major"; \
    rustup run nightly bpf-linker --version

# 3. The daemon, with the XDP program embedded (blocker/build.rs builds it).
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p blocker \
    && install -D -m 0755 target/release/blocker /out/blocker

# ---- Run -----------------------------------------------------------------------------------
FROM debian:bookworm-slim

# CA certificates for an https LAPI (blocker also carries the public roots; a private CA
# goes in ca_cert_path).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

COPY --from=builder /out/blocker /usr/bin/blocker

# Root inside the container, but only with the capabilities the container is given
# (compose: cap_drop ALL, cap_add BPF, NET_ADMIN, PERFMON).
ENV NO_COLOR=1
ENTRYPOINT ["/usr/bin/blocker"]
CMD ["run", "-c", "/etc/crowdsec/bouncers/crowdsec-blocker.yaml"]
