# The MultiAgents server and SDK (with the Python demo's workers), one image:
#   docker build -t multiagents .
#   docker run -p 50051:50051 multiagents            # server, embedded Redis
# docker-compose.yml runs it against a Redis container, with the demo worker.
# Not built on the development machine (no Docker there): see README.md.
FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY sdk ./sdk
COPY server ./server
RUN pip install --no-cache-dir . ./server
COPY workers/python ./workers/python

# Listen on every interface of the container, not only its loopback.
ENV MULTIAGENTS_HOST=0.0.0.0 \
    MULTIAGENTS_PORT=50051 \
    MULTIAGENTS_DATA_DIR=/data
VOLUME /data
EXPOSE 50051
CMD ["multiagents", "serve"]
