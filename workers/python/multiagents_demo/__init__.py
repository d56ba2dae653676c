"""The order-processing saga demo: workers and the `multiagents demo` runner."""
