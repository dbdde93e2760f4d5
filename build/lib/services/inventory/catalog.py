"""The demo catalog seeded on first start: a dozen products, four categories, one last unit."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ProductSeed(BaseModel):
    sku: str
    name: str
    category: str
    price_cents: int = Field(gt=0)
    """Positive: every order costs something, so every charge has something to refund."""
    stock: int = Field(ge=0)


DEMO_CATALOG: tuple[ProductSeed, ...] = (
    ProductSeed(
        sku="KB-MECH-01",
        name="Mechanical keyboard",
        category="peripherals",
        price_cents=8999,
        stock=250,
    ),
    ProductSeed(
        sku="MOUSE-ERGO-01",
        name="Ergonomic mouse",
        category="peripherals",
        price_cents=4999,
        stock=400,
    ),
    ProductSeed(
        sku="HEADSET-01",
        name="Noise-cancelling headset",
        category="peripherals",
        price_cents=12999,
        stock=150,
    ),
    ProductSeed(
        sku="MON-27-4K", name='27" 4K monitor', category="displays", price_cents=34999, stock=120
    ),
    ProductSeed(
        sku="MON-34-UW",
        name='34" ultrawide monitor',
        category="displays",
        price_cents=52999,
        stock=80,
    ),
    ProductSeed(
        sku="ARM-DUAL-01", name="Dual monitor arm", category="displays", price_cents=7999, stock=200
    ),
    ProductSeed(
        sku="DESK-STAND-01", name="Standing desk", category="furniture", price_cents=44999, stock=60
    ),
    ProductSeed(
        sku="CHAIR-ERGO-01",
        name="Ergonomic chair",
        category="furniture",
        price_cents=39999,
        stock=90,
    ),
    ProductSeed(
        sku="LAMP-LED-01", name="LED desk lamp", category="furniture", price_cents=3999, stock=300
    ),
    ProductSeed(
        sku="CABLE-USBC-2M",
        name="USB-C cable, 2 m",
        category="accessories",
        price_cents=1499,
        stock=900,
    ),
    ProductSeed(
        sku="HUB-USBC-7",
        name="7-port USB-C hub",
        category="accessories",
        price_cents=5999,
        stock=350,
    ),
    ProductSeed(
        sku="CAM-VINTAGE-01",
        name="Vintage film camera (last one)",
        category="accessories",
        price_cents=24999,
        stock=1,
    ),
)
