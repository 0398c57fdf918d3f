// Package amqp is the RabbitMQ adapter: the strict CloudEvents codec for movement events,
// the broker topology (main, dead-letter and delayed-retry exchanges and queues), the
// batching consumer that feeds ports.Recorder and settles every delivery (ack, delayed
// retry or dead letter), and a confirming publisher for the producer and dead-letter
// replay. Other packages import it as amqpadapter.
package amqp
