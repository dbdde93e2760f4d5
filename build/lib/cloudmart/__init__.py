"""Shared core of CloudMart Sagas: the contracts every process speaks and the settings it reads."""
