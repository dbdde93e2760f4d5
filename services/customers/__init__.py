"""Customers: an event-sourced aggregate (its events in the event store, its personal data
sealed with a key of its own) with its own database for keys, e-mail claims and orders."""

from services.customers.service import CustomersService

__all__ = ["CustomersService"]
