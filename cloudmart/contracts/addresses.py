"""Where an order goes: the shipping address, shared by orders and customers' profiles.

A module of its own so that both can import it: an order may carry a guest's details
(cloudmart/contracts/customers.py), and a customer's profile carries an address.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from cloudmart.contracts.text import AddressLine, City, CountryCode, PersonName, PostalCode


class ShippingAddress(BaseModel):
    # Unknown fields are refused rather than ignored, as in every request body.
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: PersonName
    line1: AddressLine
    line2: AddressLine | None = None
    city: City
    postal_code: PostalCode
    country: CountryCode
