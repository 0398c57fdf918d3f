package http

import (
	"embed"
	"errors"
	"io/fs"
	"path"

	"github.com/gofiber/fiber/v2"
	swaggerfiles "github.com/swaggo/files/v2"
)

// openAPI is the OpenAPI 3 document of the read API, written by hand to match the routes
// (a test compares the two).
//
//go:embed openapi.json
var openAPI []byte

// docsFiles replaces the two Swagger UI files that name a document: ours load
// /openapi.json from this server and nothing from any CDN.
//
//go:embed docs/index.html docs/swagger-initializer.js
var docsFiles embed.FS

// docsCSP allows only this origin; Swagger UI needs inline styles and data: images.
const docsCSP = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; " +
	"script-src 'self'; connect-src 'self'; object-src 'none'; frame-ancestors 'none'"

func docsRoutes(app *fiber.App) {
	app.Get("/openapi.json", func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		return c.Send(openAPI)
	})
	app.Get("/docs", func(c *fiber.Ctx) error { return sendDocsFile(c, "index.html") })
	app.Get("/docs/:file", func(c *fiber.Ctx) error { return sendDocsFile(c, c.Params("file")) })
}

// sendDocsFile serves one Swagger UI file: ours for the index and initializer, the
// embedded swaggo/files copy otherwise.
func sendDocsFile(c *fiber.Ctx, name string) error {
	var (
		body []byte
		err  error
	)
	switch name {
	case "index.html", "swagger-initializer.js":
		body, err = docsFiles.ReadFile("docs/" + name)
	default:
		if !fs.ValidPath(name) {
			return fiber.ErrNotFound
		}
		body, err = fs.ReadFile(swaggerfiles.FS, name)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return fiber.ErrNotFound
	}
	if err != nil {
		return err
	}
	c.Type(path.Ext(name))
	c.Set(fiber.HeaderContentSecurityPolicy, docsCSP)
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	return c.Send(body)
}
