"""The value types of settings: one name per kind of value, with its bounds, for the config check
(:mod:`maxpoolbert.config.schema`) and the classes that declare their own fields (:mod:`maxpoolbert.tasks.task`).

Plain ``typing.Annotated`` types with pydantic ``Field`` bounds: a dataclass annotated with them
stays a plain dataclass; the schema turns its fields into a pydantic model and the "allowed" text
of an error is written from the bounds."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

Text = Annotated[str, Field(strict=False, coerce_numbers_to_str=True)]  # a folder may be called 2024
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
# finite: inf is not a learning rate (stored as null, it trains to NaN), nan compares with nothing
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Probability = Annotated[float, Field(ge=0, lt=1)]   # dropout, Adam's betas
Fraction = Annotated[float, Field(ge=0, le=1)]
NoLimit = Literal[-1]
Columns = Annotated[list[Text], Field(min_length=1, max_length=2)]
