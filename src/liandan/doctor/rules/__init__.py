"""Doctor rules, one module per problem, each registered with ``@register_rule``."""
