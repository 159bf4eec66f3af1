function "a" {
  timeout = "5s"
}

queue "q" {
  function = "a"
}

topic "t" {
  subject = "t"
}

queue {
  subject = "x"
}
