"""
The command strategy (websocketd's model): one process per connection, each
text message a line on its standard input, each line of its standard output
a message back.
"""
