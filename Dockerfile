# The myaas image: one static binary that runs the manager and, copied into database pods by an
# init container, the agent. Build where Docker exists with `docker build -t myaas:dev .`;
# the local cluster builds the same layout without Docker (hack/dev-cluster.sh load).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY main.go ./
COPY api/ api/
COPY controllers/ controllers/
COPY internal/ internal/
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /myaas .

FROM gcr.io/distroless/static:nonroot
COPY --from=build /myaas /myaas
USER 65532:65532
ENTRYPOINT ["/myaas"]
