# A container image of the node: `docker build -t mycelium .`, then for example
#   docker run -d --name mycelium --network host --cap-add NET_ADMIN \
#     --device /dev/net/tun -v mycelium:/var/lib/mycelium mycelium \
#     --peers 'tcp://188.40.132.242:9651' 'quic://185.69.166.8:9651'
# Arguments after the image name are the node's options (`mycelium --help`). The
# key is kept in the volume mounted at /var/lib/mycelium; with host networking the
# TUN device and the API (127.0.0.1:8989) are the host's.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# No line tables in the image's binary (the release profile keeps them for
# profiling; scripts/setup.sh splits them into a separate file instead).
ENV CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols
RUN cargo build --release --locked -p mycelium-cli

FROM debian:bookworm-slim
COPY --from=build /src/target/release/mycelium /usr/bin/mycelium
COPY contrib/mycelium.toml /etc/mycelium/mycelium.toml
VOLUME /var/lib/mycelium
EXPOSE 9651/tcp 9651/udp 9650/udp
ENTRYPOINT ["/usr/bin/mycelium", "--config-file", "/etc/mycelium/mycelium.toml", "--key-file", "/var/lib/mycelium/priv_key.bin"]
