package amqp

// VerdictOf exposes verdictFor to the external tests as plain values.
func VerdictOf(result error) (action, reason, detail string) {
	v := verdictFor(result)
	return [...]string{ack: "ack", retryLater: "retryLater", deadLetter: "deadLetter"}[v.action], v.reason, v.detail
}
