nats {
  name     = "node 1"
  replicas = 7
  url      = "nats://a:4222"
  cluster {
    listen = "127.0.0.1:6222"
  }
}
