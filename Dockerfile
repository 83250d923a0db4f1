# idnode against an external PostgreSQL: docker run -e IDNODE_DATABASE_URL=postgresql://... idnode
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY node ./node
COPY protocol ./protocol
COPY registry ./registry
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/idnode --create-home idnode
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER idnode
# Inside a container the node listens on all interfaces; publish only the ports you need.
# Its HS_SITE must name the address clients reach the host at, which the container cannot
# see: docker run -e IDNODE_PUBLIC_ADDRESS=203.0.113.7 ... (without it, the container's
# own address is advertised, and the node says so in its log).
ENV IDNODE_BIND=0.0.0.0 \
    IDNODE_LOG_FORMAT=json \
    PYTHONUNBUFFERED=1
# 2641 native Handle protocol (UDP and TCP), 8000 HTTP API, 9100 health and metrics.
EXPOSE 2641/udp 2641/tcp 8000/tcp 9100/tcp
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9100/readyz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["idnode"]
CMD ["serve"]
