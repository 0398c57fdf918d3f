// Package http is the Fiber adapter: the read API (README "HTTP API", openapi.json) over
// ports.Queries, its OpenAPI document and Swagger UI, and the operational endpoints
// (health, readiness, Prometheus metrics) that both the API and the consumer processes
// serve. Errors become RFC 9457 problem documents in one place, problemFor; requests
// refused before they reach a route (parse errors, unknown methods, ambiguous framing)
// are answered by guard with the same documents. Other packages import it as httpadapter.
package http
