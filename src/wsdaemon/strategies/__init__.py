"""
Built-in reply strategies, each in its own module.
"""
