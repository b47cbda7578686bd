"""Airflow operators for Truto."""
