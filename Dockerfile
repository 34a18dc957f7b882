# hookflow relay image: build with the Rust toolchain, run as a non-root user on a minimal base.
#   docker build -t hookflow .
#   docker run -p 8080:8080 -v hookflow-data:/data -e GH_TOKEN=... hookflow [--config /etc/hookflow/relay.yml]
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
RUN cargo build --profile dist --locked -p hookflow --bin hookflow \
 && mkdir -p /data

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/dist/hookflow /usr/local/bin/hookflow
# The store lives in a volume owned by the image's non-root user (65532).
COPY --from=build --chown=65532:65532 /data /data
VOLUME ["/data"]
ENV HOOKFLOW_DATA=/data \
    HOOKFLOW_LISTEN=0.0.0.0:8080 \
    HOOKFLOW_LOG_FORMAT=json
EXPOSE 8080
USER 65532:65532
# SIGTERM drains requests and deliveries in flight (see shutdown_timeout).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/hookflow", "relay"]
