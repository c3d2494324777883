# qcowkit in a container: build with the official Swift image, run on slim Debian.
#
#   docker build -t qcowkit . && docker run --rm -v "$PWD:/data" qcowkit info /data/disk.qcow2
#
# The build stage runs the README's set-up command: apt-get install of the -dev
# packages, then `swift build -c release` (qemu-utils is left out: it is only
# the tests' oracle, and the tests do not run here).

FROM swift:6.3-bookworm AS build
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       libglib2.0-dev zlib1g-dev libzstd-dev libgnutls28-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies (swift-system; swift-property-based for the tests) are git packages on
# GitHub. With network access SwiftPM clones them here as usual. Without it
# (an offline build host), run `swift build` or `swift package resolve` in the
# checkout first: .dockerignore lets SwiftPM's bare git mirrors
# (.build/repositories) and Package.resolved into the context, and SwiftPM then
# creates its working copies from those mirrors at the pinned revisions
# instead of fetching. Package.resolved records a hash of Package.swift: after
# the manifest changes, remove Package.resolved before resolving, or SwiftPM
# in the build stage sees a stale pin file and fetches anyway.
COPY . .
# The Swift runtime is linked in statically, so the runtime stage needs no
# Swift toolchain libraries: only the C and C++ runtime libraries it links,
# and GLib and GnuTLS, which it opens with dlopen (serve's main loop, TLS).
RUN swift build -c release --product qcowkit --static-swift-stdlib \
    && install -D -m 0755 "$(swift build -c release --show-bin-path)/qcowkit" /out/qcowkit

FROM debian:bookworm-slim
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       libglib2.0-0 zlib1g libzstd1 libgnutls30 libstdc++6 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/qcowkit /usr/local/bin/qcowkit
WORKDIR /data
ENTRYPOINT ["qcowkit"]
