"""glee.service"""
