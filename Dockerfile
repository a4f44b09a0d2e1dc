# meeting-bot: Debian's Chromium and PulseAudio, the bot in a virtual environment, run as a non-root user
# under tini. Build: docker build -t meeting-bot .   Run: see docs/container.md.

# --- Stage 1: the virtual environment (pip, binutils and caches stay in this stage) ---
FROM debian:bookworm-slim AS venv

ARG DEBIAN_FRONTEND=noninteractive
# Versions are not pinned: bookworm only moves on security fixes, which this image should pick up.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv binutils \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv

# Dependencies first, read from pyproject.toml alone, so editing the source does not reinstall them, at
# the versions of requirements.lock (the same as scripts/setup's): every build gets the same packages,
# and so the same size, whatever PyPI has published since.
# The postgres extra is included: the service can keep its bots in PostgreSQL (see compose.yaml).
# No bytecode here: the final stage compiles only what the bot imports.
WORKDIR /src
COPY pyproject.toml requirements.lock ./
RUN python3 -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
print("\n".join(p["dependencies"] + p["optional-dependencies"]["postgres"]))' > /tmp/requirements.txt \
    && /opt/venv/bin/pip install --no-compile --only-binary=:all: -c requirements.lock -r /tmp/requirements.txt

# Then the bot itself, without dependencies (all above). The venv then loses what only installs or
# debugs: pip and setuptools, the dependencies' own test suites, debug symbols of Playwright's
# Node.js and of the extension modules (about 110 MB together), and what only type checkers and
# compilers read: *.pyi stubs, Playwright's TypeScript declarations, numpy's C headers (about 5 MB).
# The auditwheel-bundled *.libs are left as they are.
COPY README.md ./
COPY bot ./bot
RUN /opt/venv/bin/pip install --no-compile --no-deps . \
    && /opt/venv/bin/pip uninstall -y pip setuptools \
    && site="$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
    && find "$site" -depth -type d -name tests -prune -exec rm -rf {} + \
    && find "$site" -name '*.pyi' -delete \
    && rm -rf "$site/playwright/driver/package/types" "$site/numpy/_core/include" \
    && strip "$site/playwright/driver/node" \
    && find "$site" -name '*.so' -not -path '*.libs/*' -exec strip --strip-unneeded {} +

# --- Stage 2: the image ---
FROM debian:bookworm-slim

ARG DEBIAN_FRONTEND=noninteractive
# chromium and pulseaudio (with pulseaudio-utils: pactl, parec, pacat) carry the meeting's sound; xvfb
# gives each bot its own X display, on which Chromium runs headful (browser.display = "xvfb");
# python3 runs the venv; Playwright's Node.js driver needs libatomic1; tini is PID 1 (reaps zombies,
# forwards signals); espeak-ng speaks for `meeting-bot demo`'s simulated participant and agent, in
# English only (its other dictionaries: 10 MB).
# hadolint ignore=DL3008
RUN echo 'path-exclude=/usr/lib/*/espeak-ng-data/*_dict' >/etc/dpkg/dpkg.cfg.d/espeak-ng-english \
    && echo 'path-include=/usr/lib/*/espeak-ng-data/en_dict' >>/etc/dpkg/dpkg.cfg.d/espeak-ng-english \
    && apt-get update \
    && apt-get install -y --no-install-recommends \
        chromium pulseaudio xvfb python3 libatomic1 tini ca-certificates espeak-ng \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 --shell /bin/bash bot \
    && install -d -o bot -g bot /data

# The entrypoint changes less often than the bot: its layer goes first.
COPY scripts/entrypoint /usr/local/bin/meeting-bot-entrypoint
COPY --from=venv /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# Bytecode for every module the bot imports (about 22 MB; all of the venv's would be 37 MB): it saves
# about 3 s of CPU at each start. Importing them all here also fails the build if one cannot load.
RUN python -c 'import importlib, pkgutil, bot; \
names = [m.name for m in pkgutil.walk_packages(bot.__path__, "bot.") if not m.name.endswith("__main__")]; \
names += ["bot.cli", "uvicorn.loops.auto", "uvicorn.protocols.http.auto", "uvicorn.lifespan.on", \
"sqlalchemy.dialects.sqlite", "sqlalchemy.dialects.postgresql.psycopg", "psycopg"]; \
[importlib.import_module(n) for n in names]; \
import bot.cli; bot.cli.build_parser()'

# PYTHONUNBUFFERED: status lines reach `docker logs` as they happen. BOT_DB_URL: the service's SQLite
# file on the /data volume (override with a PostgreSQL URL). Chromium needs no large /dev/shm: Playwright
# launches it with --disable-dev-shm-usage.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BOT_DB_URL=sqlite:////data/bots.db

# Numeric, so runtimes can verify it is not root (Kubernetes runAsNonRoot): the user `bot` made above.
USER 1000:1000
WORKDIR /data
EXPOSE 8080

# Healthy when `serve` answers GET /health; other commands (join, demo) have no server and report healthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/meeting-bot-entrypoint", "--healthcheck"]

ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/meeting-bot-entrypoint"]
CMD ["--help"]
