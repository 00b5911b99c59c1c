"""The API's routes: the same paths as every Keel service."""

from django.urls import path

from . import views

urlpatterns = [
    path("health/details", views.details),
    path("<str:domain>/match/<str:key>", views.match),
    path("<str:domain>/rewards", views.reward),
]
