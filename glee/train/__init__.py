"""glee.train"""
